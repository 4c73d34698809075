//! The one place errors become HTTP answers: `{"error": {"code", "message", "details"}}`.
//! Store failures are logged and answered with a plain 500; their text never reaches the caller,
//! and a unique key taken in the database is answered in the catalog's words (`store::Taken`).

use crate::catalog::CatalogError;
use crate::domain::FieldError;
use crate::store::StoreError;
use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Every refusal as answered: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// What was refused and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    /// A stable snake_case code (`invalid_field`, `not_found`, …).
    #[schema(pattern = "^[a-z][a-z0-9_]*$")]
    pub code: String,
    /// For people.
    pub message: String,
    /// What the code is about: the `field`, the `line` and `column`, Stripe's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
}

/// An error answer: status, a stable snake_case code, a message for people, optional details.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Map<String, Value>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Details of the refusal: an object (any other value is put under `value`).
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(match details {
            Value::Object(fields) => fields,
            other => Map::from_iter([("value".to_owned(), other)]),
        });
        self
    }

    /// The object a change saved before Stripe refused or could not be reached, as it now stands
    /// (its `stripe.state` says `failed`), in `details.saved`: the caller sees what was kept.
    pub fn with_saved(mut self, saved: impl Serialize) -> Self {
        let saved = serde_json::to_value(saved).unwrap_or(Value::Null);
        self.details
            .get_or_insert_with(Map::new)
            .insert("saved".to_owned(), saved);
        self
    }

    /// A field with a bad value: 422 naming the field.
    pub fn invalid_field(error: FieldError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            error.to_string(),
        )
        .with_details(json!({ "field": error.field }))
    }

    pub fn not_found(kind: &str, key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{kind} `{key}` does not exist"),
        )
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "tollbooth could not complete the request; the failure is in its log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(taken) => {
                Self::new(StatusCode::CONFLICT, "conflict", taken.to_string())
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Self::internal()
            }
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Invalid(field) => Self::invalid_field(field),
            CatalogError::NotFound { kind, key } => Self::not_found(kind, &key),
            CatalogError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            CatalogError::InUse { ref live, .. } => {
                let details = json!({
                    "live_subscriptions": live.count,
                    "subscriptions": live.first,
                });
                Self::new(StatusCode::CONFLICT, "in_use", error.to_string()).with_details(details)
            }
            CatalogError::Archived { .. } => {
                Self::new(StatusCode::CONFLICT, "archived", error.to_string())
            }
            CatalogError::Store(store) => store.into(),
        }
    }
}

impl From<crate::notify::NotifyError> for ApiError {
    fn from(error: crate::notify::NotifyError) -> Self {
        use crate::notify::NotifyError;
        match error {
            NotifyError::Store(store) => store.into(),
            NotifyError::NotAccepted { kind, ref reason } => {
                let details = json!({ "notification": kind, "endpoint_answer": reason });
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "notification_not_accepted",
                    format!("{error}: in blocking mode a change is made only once the provider's endpoint accepts it; nothing was changed"),
                )
                .with_details(details)
            }
        }
    }
}

impl From<crate::billing::BillingError> for ApiError {
    fn from(error: crate::billing::BillingError) -> Self {
        use crate::billing::BillingError;
        match error {
            BillingError::UnknownSubscription(key) => Self::not_found("subscription", &key),
            BillingError::Invalid(field) => Self::invalid_field(field),
            BillingError::NotActive { .. } => {
                Self::invalid_field(FieldError::new("period_start", error.to_string()))
            }
            BillingError::Store(store) => store.into(),
            BillingError::Pricing(pricing) => {
                tracing::error!(error = %pricing, "rating failed");
                Self::internal()
            }
        }
    }
}

impl From<crate::stripe::StripeError> for ApiError {
    fn from(error: crate::stripe::StripeError) -> Self {
        use crate::stripe::StripeError;
        let saved = "the change is saved and marked unsynced; it is retried by `tollbooth stripe sync`, the daily job, or this request again";
        match error {
            StripeError::Store(store) => store.into(),
            StripeError::Refused {
                status,
                kind: _,
                code,
                message,
                param,
            } => Self::new(
                StatusCode::BAD_GATEWAY,
                "stripe_refused",
                format!("Stripe refused the request: {message}; {saved}"),
            )
            .with_details(
                json!({ "stripe_status": status, "stripe_code": code, "stripe_param": param }),
            ),
            StripeError::Unavailable { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "stripe_unavailable",
                format!("{error}; {saved}"),
            ),
            StripeError::Unreadable {
                ref request,
                ref object,
                ..
            } => {
                let details = json!({ "stripe_request": request, "expected": object });
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "stripe_unreadable",
                    format!("{error}; {saved}"),
                )
                .with_details(details)
            }
            StripeError::Decode(_) => Self::new(
                StatusCode::BAD_GATEWAY,
                "stripe_unreadable",
                format!("{error}; {saved}"),
            ),
            other => Self::new(
                StatusCode::BAD_GATEWAY,
                "stripe_error",
                format!("{other}; {saved}"),
            ),
        }
    }
}
