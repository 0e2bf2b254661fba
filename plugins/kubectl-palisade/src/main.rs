//! `kubectl palisade`: look at and decide Palisade Approvals.
//!
//! ```text
//! kubectl palisade approvals [-n NAMESPACE | -A] [--pending]
//! kubectl palisade show NAME [-n NAMESPACE]
//! kubectl palisade approve NAME [-n NAMESPACE] --reason "why"
//! kubectl palisade deny    NAME [-n NAMESPACE] --reason "why"
//! ```
//!
//! Install: put the binary on your PATH (it must stay named
//! `kubectl-palisade`). It talks to the cluster of your kubeconfig
//! (`KUBECONFIG`, its current context and namespace) as you.
//!
//! `approve` / `deny` write `spec.decision`, `spec.reason` and, when the
//! cluster answers a SelfSubjectReview (`kubectl auth whoami`),
//! `spec.decidedBy`: a JSON merge patch built with serde_json. The
//! chart's admission policies check (and, with MutatingAdmissionPolicy,
//! stamp) that `decidedBy` is really you and that you hold the `approve`
//! verb (ClusterRole `palisade-approver`).

mod show;

use clap::{Parser, Subcommand};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use palisade_crds::{Approval, ApprovalPhase};
use serde_json::json;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl palisade",
    about = "Look at and decide Palisade Approvals"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List Approvals (phase as of now).
    #[command(visible_alias = "list")]
    Approvals {
        #[arg(short, long)]
        namespace: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long, conflicts_with = "namespace")]
        all_namespaces: bool,
        /// Only those waiting for a decision.
        #[arg(long)]
        pending: bool,
    },
    /// What a held call is: agent, tool, rule, redacted arguments,
    /// deadline, and how to decide it.
    Show {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Let the agent run the held call once.
    Approve(Decide),
    /// Refuse the held call.
    Deny(Decide),
}

#[derive(clap::Args, Debug)]
struct Decide {
    name: String,
    #[arg(short, long)]
    namespace: Option<String>,
    /// Why (recorded in the audit).
    #[arg(short, long)]
    reason: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What went wrong, as a person reads it.
#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The cluster we talk to, for the errors that concern it.
#[derive(Clone)]
struct Cluster {
    client: Client,
    url: String,
}

impl Cluster {
    /// An API error in the server's own words (like kubectl's
    /// `Error from server (Forbidden): ...`); anything else says which
    /// server could not be reached.
    fn failure(&self, e: kube::Error) -> Failure {
        match e {
            kube::Error::Api(s) => Failure(format!("from server ({}): {}", s.reason, s.message)),
            other => Failure(format!(
                "cannot reach the API server at {} (from your kubeconfig): {other}",
                self.url
            )),
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| Failure(format!("cannot read your kubeconfig: {e}")))?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|e| Failure(format!("cannot use your kubeconfig: {e}")))?;
    let cluster = Cluster { client, url };
    let client = &cluster.client;
    let fail = |e| cluster.failure(e);
    let namespaced = |ns: Option<String>| {
        let ns = ns.unwrap_or_else(|| client.default_namespace().to_owned());
        (Api::<Approval>::namespaced(client.clone(), &ns), ns)
    };
    match command {
        Command::Approvals {
            namespace,
            all_namespaces,
            pending,
        } => {
            let api = if all_namespaces {
                Api::<Approval>::all(client.clone())
            } else {
                namespaced(namespace).0
            };
            let list = api.list(&ListParams::default()).await.map_err(fail)?;
            print!(
                "{}",
                show::table(&list.items, pending, jiff::Timestamp::now())
            );
            Ok(())
        }
        Command::Show { name, namespace } => {
            let (api, _) = namespaced(namespace);
            let a = api.get(&name).await.map_err(fail)?;
            print!("{}", show::describe(&a, jiff::Timestamp::now()));
            Ok(())
        }
        Command::Approve(d) => decide(&cluster, d, "Approved", namespaced).await,
        Command::Deny(d) => decide(&cluster, d, "Denied", namespaced).await,
    }
}

async fn decide(
    cluster: &Cluster,
    d: Decide,
    decision: &str,
    namespaced: impl Fn(Option<String>) -> (Api<Approval>, String),
) -> Result<(), Failure> {
    let (api, namespace) = namespaced(d.namespace);
    let fail = |e| cluster.failure(e);
    let current = api.get(&d.name).await.map_err(fail)?;
    let phase = current.phase_at(jiff::Timestamp::now());
    if phase != ApprovalPhase::Pending {
        return Err(Failure(format!(
            "approval {} in {namespace} is {}, not Pending: a decision is final, and an expired request needs the agent to ask again",
            d.name,
            phase.as_str()
        )));
    }
    let mut spec = json!({"decision": decision, "reason": d.reason});
    match whoami(&cluster.client).await {
        Some(me) => spec["decidedBy"] = json!(me),
        None => eprintln!(
            "kubectl palisade: the cluster does not answer a SelfSubjectReview (kubectl auth whoami); leaving spec.decidedBy to the admission policy"
        ),
    }
    let patch = json!({"spec": spec});
    let patched = api
        .patch(&d.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(fail)?;
    println!(
        "approval.palisade.dev/{} {} ({} may {}run {})",
        patched.name_any(),
        decision.to_lowercase(),
        patched.spec.call.agent,
        if decision == "Approved" { "" } else { "not " },
        patched.spec.call.tool
    );
    Ok(())
}

/// Who the cluster says we are, if it answers.
async fn whoami(client: &Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()?;
    review.status?.user_info?.username.filter(|u| !u.is_empty())
}
