// The Palisade console's only script: the decisions table follows
// /console/stream (server-sent events). Rows are built with textContent,
// never HTML. Without JavaScript the page still shows the newest rows.
"use strict";
(function () {
  const table = document.getElementById("decisions");
  const url = table && table.dataset.stream;
  if (!url) return;
  const body = table.tBodies[0];
  const status = document.getElementById("live-status");
  const empty = document.getElementById("decisions-empty");
  const MAX_ROWS = 500;
  const cell = (tr, text) => { const td = tr.insertCell(); td.textContent = text; return td; };
  const kind = (d) => ["Allow", "Approved", "Consumed"].includes(d) ? "ok"
    : ["Deny", "Denied", "Expired", "Alert"].includes(d) ? "bad" : "held";
  function add(row) {
    if (body.querySelector(`tr[data-cursor="${CSS.escape(row.cursor)}"]`)) return;
    const tr = document.createElement("tr");
    tr.dataset.cursor = row.cursor;
    tr.className = "fresh";
    const a = document.createElement("a");
    a.href = "/console/decisions/" + encodeURIComponent(row.id);
    a.textContent = row.time;
    tr.insertCell().appendChild(a);
    cell(tr, row.namespace); cell(tr, row.agent); cell(tr, row.kind);
    const badge = document.createElement("span");
    badge.className = "badge " + kind(row.decision);
    badge.textContent = row.decision;
    tr.insertCell().appendChild(badge);
    cell(tr, row.reasons); cell(tr, row.subject); cell(tr, row.rule); cell(tr, row.latency);
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    if (empty) empty.hidden = true;
  }
  const source = new EventSource(url);
  source.addEventListener("decision", (e) => add(JSON.parse(e.data)));
  source.addEventListener("open", () => {
    status.hidden = false; status.textContent = "live"; status.className = "live";
  });
  source.addEventListener("error", () => {
    status.hidden = false; status.textContent = "reconnecting…"; status.className = "live down";
  });
  source.addEventListener("unavailable", () => {
    status.hidden = false; status.textContent = "audit database unavailable"; status.className = "live down";
  });
})();
