use super::*;

fn forbidden(text: &str) -> bool {
    is_forbidden_ip(text.parse().unwrap())
}

#[test]
fn forbidden_addresses() {
    let cases = [
        "127.0.0.1",
        "127.255.0.9",
        "10.0.0.5",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.255",
        "169.254.169.254",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "240.0.0.1",
        "192.0.2.10",
        "198.51.100.1",
        "203.0.113.7",
        "198.18.0.1",
        "::",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:169.254.169.254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.5",
        "::127.0.0.1",
        "::10.0.0.5",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::127.0.0.1",
        "64:ff9b:1::1",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "2001::1",
        "fec0::1",
    ];
    for case in cases {
        assert!(forbidden(case), "{case} was allowed");
    }
}

#[test]
fn public_addresses_allowed() {
    let cases = [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "169.253.255.255",
        "2606:4700::1111",
        "::ffff:93.184.216.34",
        "64:ff9b::808:808",
        "2002:5db8:d822::1",
    ];
    for case in cases {
        assert!(!forbidden(case), "{case} was refused");
    }
}

#[test]
fn check_url_rejects_unsafe_urls() {
    let cases = [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:169.254.169.254]/",
        "https://127.0.0.1:6379/",
        "https://0x7f000001/",
        "https://2130706433/",
        "https://0177.0.0.1/",
        "https://[::1]/",
        "https://localhost/",
        "https://api.localhost./",
        "https://user:pass@example.com/",
        "https://",
        "ftp://example.com/",
        "file:///etc/passwd",
        "not a url",
    ];
    for case in cases {
        assert!(check_url(case, false).is_err(), "{case} was accepted");
    }
}

#[test]
fn hex_ip_host_is_normalised_then_refused() {
    let result = check_url("https://0x7f000001/", false);
    let expected = DestinationError::ForbiddenAddress {
        host: "127.0.0.1".to_string(),
        address: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    assert_eq!(result, Err(expected));
}

#[test]
fn http_needs_allow_private() {
    let refused = check_url("http://hooks.example.com/in", false);
    assert_eq!(
        refused,
        Err(DestinationError::SchemeNotAllowed("http".to_string()))
    );
    assert!(check_url("http://hooks.example.com/in", true).is_ok());
    assert!(check_url("http://10.0.0.5:8080/in", true).is_ok());
}

#[test]
fn allow_private_still_rejects_user_info() {
    let result = check_url("http://user@10.0.0.5/", true);
    assert_eq!(result, Err(DestinationError::UserInfo));
}

#[test]
fn https_public_url_accepted() {
    assert!(check_url("https://hooks.example.com/bouncewatch?x=1", false).is_ok());
    assert!(check_url("https://93.184.216.34:8443/", false).is_ok());
}

#[test]
fn one_forbidden_resolved_address_refuses_all() {
    let public: SocketAddr = "93.184.216.34:443".parse().unwrap();
    let private: SocketAddr = "10.0.0.5:443".parse().unwrap();
    assert_eq!(check_resolved("hooks.example.com", &[public]), Ok(()));

    let result = check_resolved("internal.example.test", &[public, private]);
    let expected = DestinationError::ForbiddenAddress {
        host: "internal.example.test".to_string(),
        address: private.ip(),
    };
    assert_eq!(result, Err(expected));
}

#[test]
fn empty_resolution_is_not_a_refusal() {
    let error = check_resolved("hooks.example.com", &[]).unwrap_err();
    assert_eq!(
        error,
        DestinationError::NoAddresses("hooks.example.com".to_string())
    );
    assert!(!error.is_refusal());
}

#[tokio::test]
async fn resolve_rejects_localhost_before_lookup() {
    let url = Url::parse("https://localhost:9/").unwrap();
    let result = resolve_destination(&url, false).await;
    let expected = DestinationError::LoopbackName("localhost".to_string());
    assert_eq!(result, Err(expected));
}

#[tokio::test]
async fn resolve_skips_literal_ips() {
    let url = Url::parse("https://93.184.216.34/").unwrap();
    let result = resolve_destination(&url, false).await;
    assert_eq!(result, Ok(Destination::Literal));
}
