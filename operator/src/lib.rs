//! Palisade's operator (issue #6, not built yet): the AIPolicy and
//! ToolGrant controllers that compile every policy into the one Secret
//! gateways watch, status and events, leader election, the Approval
//! lifecycle and the operator's metrics.
