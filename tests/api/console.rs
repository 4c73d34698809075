//! The console's sign-in, session and CSRF rules, and the portal's links, over plain HTTP (the
//! pages themselves are driven in Chromium by tests/browser/console.mjs).

use crate::billing::setup;
use crate::helpers::{
    ADMIN_TOKEN, Backend, TestApp, assert_error, on_both_backends, spawn_app, spawn_app_with,
    use_stripe,
};
use crate::stripe_mock::{StripeMock, fixture};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

on_both_backends!(
    sign_in_makes_a_strict_session_and_every_form_needs_its_csrf_token,
    a_portal_link_opens_its_own_subscription_until_revoked_or_expired,
    the_portal_opens_stripes_customer_portal_for_its_customer,
);

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value a form's hidden `csrf` input holds.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf input") + 19;
    html[at..at + 64].to_owned()
}

fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", response.headers()))
}

fn value(cookie: &str) -> &str {
    cookie.split(';').next().unwrap().split_once('=').unwrap().1
}

/// Signs in through the form; answers the `tb_session` Set-Cookie.
async fn sign_in(app: &TestApp, client: &reqwest::Client, tls: bool) -> String {
    let form = client
        .get(app.url("/console/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let pre = set_cookie(&form, "tb_sign_in");
    let csrf = csrf_of(&form.text().await.unwrap());
    let mut request = client
        .post(app.url("/console/sign-in"))
        .header(COOKIE, format!("tb_sign_in={}", value(&pre)))
        .form(&[("csrf", csrf.as_str()), ("token", ADMIN_TOKEN)]);
    if tls {
        request = request.header("x-forwarded-proto", "https");
    }
    let signed = request.send().await.unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()[LOCATION], "/console");
    set_cookie(&signed, "tb_session")
}

async fn sign_in_makes_a_strict_session_and_every_form_needs_its_csrf_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let client = no_redirects();
    let unsigned = client.get(app.url("/console")).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::SEE_OTHER);
    assert_eq!(unsigned.headers()[LOCATION], "/console/sign-in");

    // The sign-in form's token must come back in the form and in its cookie.
    let form = client
        .get(app.url("/console/sign-in"))
        .send()
        .await
        .unwrap();
    let pre = set_cookie(&form, "tb_sign_in");
    let csrf = csrf_of(&form.text().await.unwrap());
    let without_cookie = client
        .post(app.url("/console/sign-in"))
        .form(&[("csrf", csrf.as_str()), ("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(without_cookie.status(), StatusCode::FORBIDDEN);
    let wrong_token = client
        .post(app.url("/console/sign-in"))
        .header(COOKIE, format!("tb_sign_in={}", value(&pre)))
        .form(&[("csrf", csrf.as_str()), ("token", "tba_wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.count_rows("console_sessions").await, 0);

    let plain = sign_in(&app, &client, false).await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(plain.contains(flag), "{plain}");
    }
    assert!(!plain.contains("Secure"), "{plain}");
    let behind_tls = sign_in(&app, &client, true).await;
    assert!(behind_tls.contains("; Secure"), "{behind_tls}");
    let session = format!("tb_session={}", value(&plain));
    // Only the cookie's hash is stored.
    assert_eq!(
        app.count_where(
            "console_sessions",
            &format!("id_hash = '{}'", value(&plain))
        )
        .await,
        0
    );

    let overview = client
        .get(app.url("/console"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), StatusCode::OK);
    assert_eq!(overview.headers()["cache-control"], "no-store");
    let page = overview.text().await.unwrap();
    assert!(page.contains("<h1>Overview</h1>"), "{page}");
    let csrf = csrf_of(&page);

    // Sign-out is a form: refused without the token, done with it.
    let forged = client
        .post(app.url("/console/sign-out"))
        .header(COOKIE, &session)
        .form(&[("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count_rows("console_sessions").await, 2);
    let out = client
        .post(app.url("/console/sign-out"))
        .header(COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = client
        .get(app.url("/console"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);

    // A session past its expiry is no session.
    let other = format!("tb_session={}", value(&behind_tls));
    app.execute_sql("UPDATE console_sessions SET expires_at = 1")
        .await;
    let expired = client
        .get(app.url("/console/subscriptions"))
        .header(COOKIE, &other)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::SEE_OTHER);
    assert_eq!(expired.headers()[LOCATION], "/console/sign-in");
}

async fn a_portal_link_opens_its_own_subscription_until_revoked_or_expired(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    setup(&app, 2).await;
    let (status, link) = app
        .post(
            "/v1/subscriptions/acme-1/portal-links",
            &json!({"valid_for": "2h"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    assert_eq!(
        (link["state"].as_str(), link["subscription"].as_str()),
        (Some("valid"), Some("acme-1"))
    );
    let path = link["path"].as_str().unwrap();
    assert_eq!(
        link["url"],
        format!("{}{path}", app.address.trim_end_matches('/'))
    );
    let page = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains("data-subscription=\"acme-1\""), "{html}");
    assert!(!html.contains("acme-2"), "{html}");

    // A token altered in any part opens nothing; the link's id with another link's signature
    // neither.
    let (_, other) = app
        .post("/v1/subscriptions/acme-2/portal-links", &json!({}))
        .await;
    let token = path.trim_start_matches("/portal/");
    let parts: Vec<&str> = token.split('.').collect();
    let other_token = other["path"]
        .as_str()
        .unwrap()
        .trim_start_matches("/portal/");
    let other_parts: Vec<&str> = other_token.split('.').collect();
    for guess in [
        format!("{}.{}.{}", other_parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], other_parts[1], other_parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], "0".repeat(64)),
        format!("{}.{}", parts[0], parts[1]),
        "nothing".to_owned(),
    ] {
        let answer = app
            .client
            .get(app.url(&format!("/portal/{guess}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{guess}");
    }

    let (status, listed) = app.get("/v1/subscriptions/acme-1/portal-links").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert!(
        listed[0].get("path").is_none(),
        "a listed link has no token: {listed}"
    );

    // Revoking is by the link's own subscription only.
    let id = link["id"].as_str().unwrap();
    let wrong = app
        .send(
            app.client
                .delete(app.url(&format!("/v1/subscriptions/acme-2/portal-links/{id}")))
                .bearer_auth(ADMIN_TOKEN),
        )
        .await;
    assert_error(&wrong, StatusCode::NOT_FOUND, "not_found", None);
    let (status, revoked) = app
        .send(
            app.client
                .delete(app.url(&format!("/v1/subscriptions/acme-1/portal-links/{id}")))
                .bearer_auth(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(
        (status, revoked["state"].as_str()),
        (StatusCode::OK, Some("revoked")),
        "{revoked}"
    );
    let refused = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("data-code=\"link_revoked\"")
    );

    // Expired: the other link, its expiry moved into the past, is refused even with its token.
    app.execute_sql("UPDATE portal_links SET expires_at = 1")
        .await;
    app.execute_sql(&format!(
        "UPDATE portal_links SET expires_at = {} WHERE id = '{}'",
        other_parts[1], other_parts[0]
    ))
    .await;
    let fresh = app
        .client
        .get(app.url(other["path"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
    let (_, short) = app
        .post(
            "/v1/subscriptions/acme-2/portal-links",
            &json!({"valid_for": "1s"}),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let stale = app
        .client
        .get(app.url(short["path"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::FORBIDDEN);
    assert!(
        stale
            .text()
            .await
            .unwrap()
            .contains("data-code=\"link_expired\"")
    );

    // Bad input names its field and makes nothing.
    let before = app.count_rows("portal_links").await;
    for bad in [
        json!({"valid_for": "91d"}),
        json!({"valid_for": "soon"}),
        json!({"valid_for": "0s"}),
    ] {
        let answer = app
            .post("/v1/subscriptions/acme-1/portal-links", &bad)
            .await;
        assert_error(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("valid_for"),
        );
    }
    let unknown = app
        .post("/v1/subscriptions/nobody/portal-links", &json!({}))
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found", None);
    assert_eq!(app.count_rows("portal_links").await, before);
}

async fn the_portal_opens_stripes_customer_portal_for_its_customer(backend: Backend) {
    let stripe = StripeMock::start().await;
    stripe.mount_catalog().await;
    stripe
        .object(
            "POST",
            "/v1/billing_portal/sessions",
            "billing_portal_session",
            "bps",
        )
        .expect(1)
        .mount(&stripe.server)
        .await;
    let Some(app) = spawn_app_with(backend, |s| use_stripe(s, &stripe.uri())).await else {
        return;
    };
    setup(&app, 1).await;
    let (_, link) = app
        .post("/v1/subscriptions/acme-1/portal-links", &json!({}))
        .await;
    let path = link["path"].as_str().unwrap();
    let page = app
        .client
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("action=\"{path}/billing\"")),
        "{page}"
    );
    let opened = no_redirects()
        .post(app.url(&format!("{path}/billing")))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        opened.headers()[LOCATION].to_str().unwrap(),
        fixture("billing_portal_session")["url"].as_str().unwrap()
    );
    let sent = stripe.requests("POST", "/v1/billing_portal/sessions").await;
    let customers = stripe.requests("POST", "/v1/customers").await;
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].field("customer").unwrap().starts_with("cus_"),
        "{sent:?}"
    );
    assert!(!customers.is_empty());
    assert_eq!(sent[0].field("return_url"), Some(app.url(path).as_str()));
    assert!(
        sent[0]
            .idempotency_key
            .as_deref()
            .unwrap()
            .starts_with("tb-billing-portal-")
    );
    // A revoked link opens no Stripe session.
    let id = link["id"].as_str().unwrap();
    app.send(
        app.client
            .delete(app.url(&format!("/v1/subscriptions/acme-1/portal-links/{id}")))
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;
    let refused = no_redirects()
        .post(app.url(&format!("{path}/billing")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}
