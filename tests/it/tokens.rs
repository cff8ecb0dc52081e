//! Named admin tokens through the real binary: creation, roles, listing without values,
//! rotation by create-then-delete, audit actors and persistence across a restart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::app::{App, ADMIN_TOKEN};

/// Sends a request with `token` and returns the status and JSON body (null when empty).
async fn call(
    app: &App,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(app: &App, token: &str, name: &str, role: &str) -> (u16, Value) {
    call(
        app,
        reqwest::Method::POST,
        "/api/v1/tokens",
        token,
        Some(json!({"name": name, "role": role})),
    )
    .await
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn create_list_and_use_tokens() {
    let app = App::start(&[]).await;

    let (status, created) = create(&app, ADMIN_TOKEN, "dashboards", "read").await;
    assert_eq!(status, 201, "{created}");
    let value = created["token"].as_str().unwrap().to_string();
    assert!(value.starts_with("bwt_"), "{value}");
    assert_eq!(created["name"], "dashboards");
    assert_eq!(created["role"], "read");
    assert!(created["id"].as_str().unwrap().starts_with("tok_"));
    assert!(created["created_at"].is_string());
    assert!(created["last_used_at"].is_null());

    let (status, list) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/tokens",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(names(&list), ["config", "dashboards"]);
    assert_eq!(list["items"][0]["role"], "admin");
    assert_eq!(list["items"][0]["source"], "config");
    assert!(list["next"].is_null());
    let text = list.to_string();
    assert!(!text.contains(&value), "the list shows a token value");
    assert!(
        !text.contains(ADMIN_TOKEN),
        "the list shows the configured token"
    );
    assert!(!text.contains("digest"), "the list shows a digest");

    // The new token authenticates, and its use is recorded.
    let (status, _) = call(&app, reqwest::Method::GET, "/api/v1/actions", &value, None).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = app.admin_get("/api/v1/tokens").await;
        if list["items"][1]["last_used_at"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "last_used_at not set: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/tokens",
        "bwt_wrong",
        None,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn read_role_only_gets() {
    let app = App::start(&[]).await;
    let (_, created) = create(&app, ADMIN_TOKEN, "viewer", "read").await;
    let reader = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();

    let (status, _) = call(&app, reqwest::Method::GET, "/api/v1/tokens", &reader, None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&app, reqwest::Method::GET, "/api/v1/domains", &reader, None).await;
    assert_eq!(status, 200);

    let (status, body) = create(&app, &reader, "escalate", "admin").await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "forbidden");
    assert!(body["detail"].as_str().unwrap().contains("viewer"));

    let path = format!("/api/v1/tokens/{id}");
    let (status, body) = call(&app, reqwest::Method::DELETE, &path, &reader, None).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "forbidden");

    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/addresses/someone%40example.com/clear",
        &reader,
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // Nothing was created by the rejected request.
    let (_, list) = app.admin_get("/api/v1/tokens").await;
    assert_eq!(names(&list), ["config", "viewer"]);
}

#[tokio::test]
async fn rotation_without_restart() {
    let mut app = App::start(&[]).await;

    let (status, old) = create(&app, ADMIN_TOKEN, "deploy-2024", "admin").await;
    assert_eq!(status, 201);
    let old_value = old["token"].as_str().unwrap().to_string();
    let old_id = old["id"].as_str().unwrap().to_string();

    // An admin-role token may create tokens itself.
    let (status, new) = create(&app, &old_value, "deploy-2025", "admin").await;
    assert_eq!(status, 201, "{new}");
    let new_value = new["token"].as_str().unwrap().to_string();

    let (status, body) = create(&app, &new_value, "deploy-2025", "read").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "name_taken");

    let path = format!("/api/v1/tokens/{old_id}");
    let (status, body) = call(&app, reqwest::Method::DELETE, &path, &new_value, None).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/tokens",
        &old_value,
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(&app, reqwest::Method::DELETE, &path, &new_value, None).await;
    assert_eq!(status, 404);

    let (status, body) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/tokens/config",
        &new_value,
        None,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"], "configured_token");

    // The audit log names the token that acted.
    let (_, actions) = app.admin_get("/api/v1/actions").await;
    let entries: Vec<(String, String)> = actions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|action| {
            (
                action["actor"].as_str().unwrap().to_string(),
                action["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = |actor: &str, kind: &str| (actor.to_string(), kind.to_string());
    assert!(
        entries.contains(&expected("admin:config", "token_created")),
        "{entries:?}"
    );
    assert!(
        entries.contains(&expected("admin:deploy-2024", "token_created")),
        "{entries:?}"
    );
    assert!(
        entries.contains(&expected("admin:deploy-2025", "token_deleted")),
        "{entries:?}"
    );

    // Stored tokens survive a restart; deleted ones stay deleted.
    app.terminate();
    app.spawn().await;
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/tokens",
        &new_value,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/tokens",
        &old_value,
        None,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn invalid_requests_name_field() {
    let app = App::start(&[]).await;
    for (body, field) in [
        (json!({"role": "read"}), "name"),
        (json!({"name": "with space", "role": "read"}), "name"),
        (json!({"name": "config", "role": "admin"}), "name"),
        (json!({"name": "ci", "role": "owner"}), "role"),
        (
            json!({"name": "ci", "role": "read", "token": "mine"}),
            "token",
        ),
    ] {
        let (status, answer) = call(
            &app,
            reqwest::Method::POST,
            "/api/v1/tokens",
            ADMIN_TOKEN,
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/tokens/tok_missing",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn list_pages_with_cursor() {
    let app = App::start(&[]).await;
    for name in ["one", "two", "three"] {
        let (status, _) = create(&app, ADMIN_TOKEN, name, "read").await;
        assert_eq!(status, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/tokens?limit=2".to_string();
    for _ in 0..5 {
        let (status, page) = app.admin_get(&path).await;
        assert_eq!(status, 200, "{page}");
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(names(&page));
        match page["next"].as_str() {
            Some(cursor) => path = format!("/api/v1/tokens?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["config", "one", "two", "three"]);

    let (status, body) = app.admin_get("/api/v1/tokens?cursor=bogus").await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "cursor");
}
