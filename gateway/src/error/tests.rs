use super::*;

#[test]
fn error_codes_are_unique_and_documented() {
    let doc = include_str!("../../../docs/reason-codes.md");
    let mut seen = std::collections::HashSet::new();
    for code in ErrorCode::ALL {
        assert!(
            seen.insert(code.as_str()),
            "duplicate code {}",
            code.as_str()
        );
        assert!(
            ReasonCode::parse(code.as_str()).is_none(),
            "{} is a reason code too",
            code.as_str()
        );
        assert!(
            doc.contains(&format!("`{}`", code.as_str())),
            "docs/reason-codes.md does not list `{}`",
            code.as_str()
        );
    }
}

#[test]
fn errors_render_the_openai_shape_with_their_status_code_and_details() {
    let rejected = || GatewayError::Upstream {
        provider: "cloud".into(),
        request_id: "r-1".into(),
        error: UpstreamError::Client(
            422,
            crate::providers::refusal::Refusal::from_body(
                br#"{"error": {"message": "bad temperature", "code": "bad_param"}}"#,
                None,
            ),
        ),
    };
    assert!(!rejected().retryable());
    assert_eq!(
        rejected().message(),
        "provider cloud refused the request with HTTP 422: bad temperature"
    );
    assert_eq!(
        rejected().details(),
        Some(json!({"provider": "cloud", "requestId": "r-1", "providerCode": "bad_param"}))
    );
    let response = rejected().into_response();
    assert_eq!(response.status(), 422);
    assert_eq!(response.headers()["x-palisade-reason"], "upstream.rejected");
    let timeout = GatewayError::Upstream {
        provider: "cloud".into(),
        request_id: "r-1".into(),
        error: UpstreamError::Timeout,
    };
    assert!(timeout.retryable());
    assert_eq!(
        (timeout.status(), timeout.code().as_str()),
        (StatusCode::GATEWAY_TIMEOUT, "upstream.timeout")
    );
    let denied = GatewayError::Refused {
        code: ReasonCode::ToolDeniedByRule,
        message: "no".into(),
        details: json!({"rule": "r"}),
    };
    assert_eq!(
        (
            denied.status(),
            denied.code().as_str(),
            error_type(denied.status())
        ),
        (
            StatusCode::FORBIDDEN,
            "tool.denied_by_rule",
            "permission_error"
        )
    );
}

#[test]
fn a_namespace_outside_the_list_is_a_403_and_an_unreachable_store_a_503() {
    let e = GatewayError::from(ApprovalError::NamespaceNotWatched("other".into()));
    assert_eq!(
        (e.status(), e.code().as_str()),
        (StatusCode::FORBIDDEN, "approvals.namespace_not_watched")
    );
    assert!(e.message().contains("\"other\""), "{}", e.message());
    let e = GatewayError::from(ApprovalError::Kube(
        kube::Error::LinesCodecMaxLineLengthExceeded,
    ));
    assert_eq!(
        (e.status(), e.code().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "approvals.unavailable")
    );
    assert!(e.retryable());
}
