//! A mock Stripe on wiremock that answers with Stripe's own example objects
//! (`wiremock-fixtures/`), and keeps Stripe's promise about idempotency: the same
//! `Idempotency-Key` with the same parameters answers the same object, with other parameters an
//! `idempotency_error`; a new key makes a new object.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One of Stripe's example objects, unchanged.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/wiremock-fixtures/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A Stripe request as the mock saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub form: HashMap<String, String>,
    pub idempotency_key: Option<String>,
    pub account: Option<String>,
}

impl SeenRequest {
    fn from(request: &Request) -> Self {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let form: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&request.body).unwrap_or_default();
        Self {
            method: request.method.to_string(),
            path: request.url.path().to_owned(),
            form: form.into_iter().collect(),
            idempotency_key: header("idempotency-key"),
            account: header("stripe-account"),
        }
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.get(name).map(String::as_str)
    }
}

/// Which object each key made, and the parameters it was made with, shared by every responder
/// of one mock Stripe.
type Made = Arc<Mutex<HashMap<String, (Value, HashMap<String, String>)>>>;

/// Answers like Stripe: the object of a known key again, or a new object for a new key.
struct StripeObject {
    fixture: &'static str,
    prefix: &'static str,
    made: Made,
    /// Stripe makes the object at once but its answer takes this long.
    delay: Option<std::time::Duration>,
}

impl Respond for StripeObject {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let seen = SeenRequest::from(request);
        let mut made = self.made.lock().expect("lock");
        if let Some(key) = &seen.idempotency_key
            && let Some((object, form)) = made.get(key)
        {
            if *form != seen.form {
                return ResponseTemplate::new(400).set_body_json(json!({"error": {
                    "type": "idempotency_error",
                    "message": format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."),
                }}));
            }
            return ResponseTemplate::new(200)
                .set_body_json(object)
                .insert_header("Idempotent-Replayed", "true");
        }
        let number = made.len() + 1;
        let id_in_path = seen.path.rsplit('/').next().unwrap_or_default().to_owned();
        let id = if id_in_path.starts_with(&format!("{}_", self.prefix)) {
            id_in_path
        } else {
            format!("{}_test{number}", self.prefix)
        };
        let object = shape(self.fixture, &id, &seen);
        if let Some(key) = seen.idempotency_key.clone() {
            made.insert(key, (object.clone(), seen.form.clone()));
        }
        let answer = ResponseTemplate::new(200).set_body_json(object);
        match self.delay {
            Some(delay) => answer.set_delay(delay),
            None => answer,
        }
    }
}

/// A Stripe example object made to fit the request: its id and the fields tests read back.
fn shape(name: &str, id: &str, request: &SeenRequest) -> Value {
    let mut object = fixture(name);
    object["id"] = json!(id);
    match name {
        "customer" => {
            object["invoice_settings"]["default_payment_method"] = Value::Null;
            object["default_source"] = Value::Null;
            if let Some(name) = request.field("name") {
                object["name"] = json!(name);
            }
            if let Some(email) = request.field("email") {
                object["email"] = json!(email);
            }
        }
        "subscription" => {
            let item = &mut object["items"]["data"][0];
            item["id"] = json!(format!("si_{id}"));
            item["subscription"] = json!(id);
            let price = request
                .field("items[0][price]")
                .unwrap_or("price_test_initial");
            item["price"]["id"] = json!(price);
            item["current_period_start"] = json!(1_790_000_000);
            item["current_period_end"] = json!(1_792_592_000);
            object["status"] = json!(if request.method == "DELETE" {
                "canceled"
            } else {
                "active"
            });
            object["cancel_at_period_end"] =
                json!(request.field("cancel_at_period_end") == Some("true"));
        }
        "checkout_session" => {
            object["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}"));
        }
        _ => {}
    }
    object
}

/// A mock Stripe server and the objects it made.
pub struct StripeMock {
    pub server: MockServer,
    made: Made,
}

impl StripeMock {
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
            made: Made::default(),
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// A mock answering Stripe objects on `verb path`, before the catch-alls.
    pub fn object(
        &self,
        verb: &str,
        path: &str,
        fixture: &'static str,
        prefix: &'static str,
    ) -> Mock {
        self.object_answering_in(verb, path, fixture, prefix, None)
    }

    /// Like [`Self::object`], but the answer comes after `delay` (the object is made at once).
    pub fn object_answering_in(
        &self,
        verb: &str,
        path: &str,
        fixture: &'static str,
        prefix: &'static str,
        delay: Option<std::time::Duration>,
    ) -> Mock {
        Mock::given(method(verb))
            .and(path_regex(format!("^{path}$")))
            .respond_with(StripeObject {
                fixture,
                prefix,
                made: self.made.clone(),
                delay,
            })
    }

    /// Every endpoint the catalog mirror uses.
    pub async fn mount_catalog(&self) {
        for (verb, path, fixture, prefix) in CATALOG {
            self.object(verb, path, fixture, prefix)
                .mount(&self.server)
                .await;
        }
    }

    /// The requests Stripe received on `verb path` (a regex), in order.
    pub async fn requests(&self, verb: &str, path: &str) -> Vec<SeenRequest> {
        let pattern = regex_lite(path);
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(SeenRequest::from)
            .filter(|r| r.method == verb && pattern(&r.path))
            .collect()
    }

    /// How many distinct objects the mock made for keys starting with `key_prefix`.
    pub fn objects_made(&self, key_prefix: &str) -> usize {
        let made = self.made.lock().expect("lock");
        made.keys().filter(|k| k.starts_with(key_prefix)).count()
    }
}

/// The endpoints tollbooth writes to: method, path pattern, fixture, id prefix.
const CATALOG: [(&str, &str, &str, &str); 12] = [
    ("POST", "/v1/products", "product", "prod"),
    ("POST", "/v1/prices", "price", "price"),
    ("POST", "/v1/prices/[^/]+", "price", "price"),
    ("POST", "/v1/customers", "customer", "cus"),
    ("POST", "/v1/customers/[^/]+", "customer", "cus"),
    ("GET", "/v1/customers/[^/]+", "customer", "cus"),
    ("POST", "/v1/subscriptions", "subscription", "sub"),
    ("POST", "/v1/subscriptions/[^/]+", "subscription", "sub"),
    ("DELETE", "/v1/subscriptions/[^/]+", "subscription", "sub"),
    ("POST", "/v1/checkout/sessions", "checkout_session", "cs"),
    ("POST", "/v1/invoiceitems", "invoiceitem", "ii"),
    ("POST", "/v1/invoiceitems/[^/]+", "invoiceitem", "ii"),
];

/// Paths in tests are literal or end in `/[^/]+`: enough of a matcher for them.
fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool + '_ {
    move |path: &str| match pattern.strip_suffix("/[^/]+") {
        Some(prefix) => path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|id| !id.is_empty() && !id.contains('/')),
        None => path == pattern,
    }
}
