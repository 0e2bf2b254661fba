//! Palisade's custom resources and everything that turns them into a
//! [`palisade_policy::PolicyBundle`]:
//!
//! - [`resources`]: `AIPolicy`, `ToolGrant`, `Approval` (`palisade.dev/v1alpha1`);
//! - [`compiler`]: resources + resolved Secrets → bundle, or diagnostics
//!   naming the object, the field and the fix; one bad policy never breaks
//!   the others, and a policy that stops compiling keeps its last good
//!   generation;
//! - [`standalone`]: the YAML file loader for running without Kubernetes;
//! - [`manifests`]: the generated CRD manifests (`crdgen` writes them);
//! - [`bundle_secret`]: the Secret that carries a compiled bundle from the
//!   operator to the gateways, and [`gateway_report`]: the Lease in which
//!   each gateway reports the revision it applied; [`labels`]: the label
//!   keys and values both sides write and select on; [`namespaces`]:
//!   namespace names and the `--watch-namespaces` list; [`logging`]: the
//!   logger both binaries install (`--log-format text|json`).

pub mod bundle_secret;
pub mod compiler;
pub mod diagnostic;
pub mod duration;
pub mod gateway_report;
pub mod guard;
pub mod labels;
pub mod logging;
pub mod manifests;
pub mod namespaces;
pub mod quarantine;
pub mod resources;
pub mod standalone;
pub use compiler::{
    Compilation, CompileError, CompileInput, GrantReport, PolicyReport, Secrets, compile,
};
pub use diagnostic::{Diagnostic, ObjectRef, Severity};
pub use resources::*;
