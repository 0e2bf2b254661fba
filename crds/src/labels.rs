//! Label keys and values Palisade's components put on the objects they
//! write, named once for every side that writes or selects on them (the
//! operator, the gateways; the chart spells the same values in YAML).

/// `app.kubernetes.io/part-of`: every object Palisade writes.
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// The value of [`PART_OF`].
pub const PALISADE: &str = "palisade";
/// `app.kubernetes.io/managed-by`: objects a controller owns.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY`] on what the operator writes.
pub const OPERATOR: &str = "palisade-operator";
/// `app.kubernetes.io/component`: which component wrote it.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// The value of [`COMPONENT`] on what a gateway writes.
pub const GATEWAY: &str = "gateway";
/// `palisade.dev/credentials`: a Secret's owner lets AIPolicies send it
/// to a model provider (`spec.providers[].credentialsSecretRef`) by
/// setting it to [`CREDENTIALS_OPT_IN`]. Any other Secret is refused, so a
/// policy author cannot ship an arbitrary Secret of the namespace to a
/// provider URL.
pub const CREDENTIALS: &str = "palisade.dev/credentials";
/// The value of [`CREDENTIALS`] that opts a Secret in.
pub const CREDENTIALS_OPT_IN: &str = "true";
