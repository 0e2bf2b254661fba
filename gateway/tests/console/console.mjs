// The console in a real browser: Debian's Chromium driven by Playwright
// (playwright-core; it never downloads a browser). Run by
// gateway/tests/console_browser.rs against the real gateway binary, with
//   CONSOLE_URL, AUDITOR_TOKEN, OPERATOR_TOKEN   the gateway and its tokens
//   PYTHON, AGENT_SCRIPT, PALISADE_URL, PALISADE_KEY   the agent (SDK calls)
//   SCREENSHOTS   where to write the screenshots
//   CHROMIUM      the browser (default /usr/bin/chromium)
// Prints "all checks passed" at the end; any failed check throws.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import path from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("CONSOLE_URL");
const shots = env("SCREENSHOTS");

/** One agent action (sdk/console_agent.py): {status, body}. */
function agent(...args) {
  const out = execFileSync(env("PYTHON"), [env("AGENT_SCRIPT"), ...args], {
    env: process.env, encoding: "utf8", timeout: 30_000,
  });
  return JSON.parse(out.trim().split("\n").pop());
}

async function login(browser, token) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/login$/, "an unauthenticated visit goes to the login page");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForURL(`${base}/console`);
  return page;
}

/** Waits until the decisions table shows a row with all of `texts`, and
 * returns how long that took after `since` (ms). */
async function rowAppears(page, texts, since, timeout = 5_000) {
  let row = page.locator("#decisions tbody tr");
  for (const t of texts) row = row.filter({ hasText: t });
  await row.first().waitFor({ timeout });
  return Date.now() - since;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  // A wrong token is refused on the page itself.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/console/login`);
    await page.fill("#token", env("PALISADE_KEY")); // an agent's key is not a console token
    await page.click("button[type=submit]");
    await page.locator("p.error").waitFor();
    assert.match(await page.locator("p.error").innerText(), /neither the auditor token nor an operator token/);
    await context.close();
  }

  // The auditor watches the live stream.
  const auditor = await login(browser, env("AUDITOR_TOKEN"));
  assert.match(await auditor.locator("#kill-switches").innerText(), /default\/clinic/);
  await auditor.goto(`${base}/console/decisions`);
  await auditor.locator("#live-status", { hasText: "live" }).waitFor({ timeout: 5_000 });

  // A decision made by an SDK call shows within a second.
  const chat = agent("chat");
  assert.equal(chat.status, 200);
  const chatShown = await rowAppears(auditor, ["chat", "Allow", "app"], Date.now(), 1_000);
  console.log(`chat decision shown ${chatShown} ms after the SDK call returned`);

  // An alert shows in the stream, and on the alerts page.
  const traversal = agent("tool", "read_file", JSON.stringify({ path: "../../../etc/passwd" }));
  assert.equal(traversal.status, 200, JSON.stringify(traversal));
  const alertShown = await rowAppears(auditor, ["security_alert", "Alert"], Date.now(), 1_000);
  console.log(`security alert shown ${alertShown} ms after the call returned`);
  await auditor.screenshot({ path: path.join(shots, "console-decisions.png"), fullPage: true });

  // Its detail: rule, reason codes, digests; never the raw prompt (the
  // policy keeps only its digest).
  await auditor.locator("#decisions tbody tr", { hasText: "chat" }).first().locator("a").click();
  const detail = await auditor.locator("#detail").innerText();
  assert.match(detail, /Prompt SHA-256\s+[0-9a-f]{64}/);
  assert.match(detail, /Reason codes\s+\S+/);
  assert.ok(!(await auditor.content()).includes("hello from the browser test"), "the raw prompt is never shown");
  await auditor.screenshot({ path: path.join(shots, "console-decision.png"), fullPage: true });

  await auditor.goto(`${base}/console/alerts`);
  assert.match(await auditor.locator("table.alerts").innerText(), /path_traversal/);

  // A held call: the auditor sees it and how to decide, but no buttons.
  const held = agent("tool", "send_email", JSON.stringify({ to: "cfo@example.com", body: "wire it" }));
  assert.equal(held.status, 202, JSON.stringify(held));
  const name = held.body.approval.name;
  await auditor.goto(`${base}/console/approvals`);
  const seen = auditor.locator(`section.approval[data-name="${name}"]`);
  await seen.waitFor();
  assert.equal(await seen.locator("button").count(), 0, "the auditor cannot decide");
  assert.match(await seen.innerText(), /Log in with an operator token/);

  // An operator approves it on the page; the held call then runs once.
  const operator = await login(browser, env("OPERATOR_TOKEN"));
  await operator.goto(`${base}/console/approvals`);
  const pending = operator.locator(`section.approval[data-name="${name}"]`);
  await pending.waitFor();
  assert.match(await pending.innerText(), /send_email/);
  await operator.screenshot({ path: path.join(shots, "console-approvals.png"), fullPage: true });
  await pending.locator("input[name=reason]").first().fill("checked with the CFO");
  await pending.locator("button.approve").click();
  await operator.waitForURL(`${base}/console/approvals`);
  await operator.locator("#no-approvals").waitFor();
  const first = agent("tool", "send_email", JSON.stringify({ to: "cfo@example.com", body: "wire it" }), name);
  assert.equal(first.status, 200, JSON.stringify(first));
  assert.equal(first.body.decision, "Allow");
  const again = agent("tool", "send_email", JSON.stringify({ to: "cfo@example.com", body: "wire it" }), name);
  assert.notEqual(again.status, 200, `an approval is used once: ${JSON.stringify(again)}`);
  console.log(`approved ${name} on the page; it ran once, then: ${again.status} ${again.body.palisade?.reasonCode ?? ""}`);

  // The overview after all this.
  await operator.goto(`${base}/console`);
  const alerts = await operator.locator("#alerts").innerText();
  assert.match(alerts, /path_traversal/);
  assert.doesNotMatch(alerts, /repeated_held_call/, "one held call, used once, is not an attack");
  assert.match(await operator.locator("#usage").innerText(), /default\/app\s+1\b/);
  await operator.screenshot({ path: path.join(shots, "console-overview.png"), fullPage: true });
  console.log("all checks passed");
} finally {
  await browser.close();
}
