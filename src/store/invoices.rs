//! Stripe invoices of tollbooth subscriptions, as their webhooks last described them.

use super::{StoreResult, Tx, now_ms, on_tx};

/// An invoice as stored: amounts in the currency's minor unit, times in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredInvoice {
    pub stripe_id: String,
    pub subscription_id: String,
    pub status: String,
    pub currency: String,
    pub total: i64,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub number: Option<String>,
    pub hosted_invoice_url: Option<String>,
    pub payment_failed_at: Option<i64>,
    pub event_created: i64,
}

impl Tx {
    /// Keeps what an event says of an invoice, unless the row holds a newer event's word.
    /// Answers whether it was written.
    pub async fn put_invoice(&mut self, invoice: &StoredInvoice) -> StoreResult<bool> {
        let sql = "INSERT INTO invoices (stripe_id, subscription_id, status, currency, total, \
                   amount_due, amount_paid, period_start, period_end, number, hosted_invoice_url, \
                   payment_failed_at, event_created, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                   ON CONFLICT (stripe_id) DO UPDATE SET status = excluded.status, \
                   currency = excluded.currency, total = excluded.total, \
                   amount_due = excluded.amount_due, amount_paid = excluded.amount_paid, \
                   period_start = excluded.period_start, period_end = excluded.period_end, \
                   number = COALESCE(excluded.number, invoices.number), \
                   hosted_invoice_url = COALESCE(excluded.hosted_invoice_url, invoices.hosted_invoice_url), \
                   payment_failed_at = CASE WHEN excluded.status = 'paid' THEN NULL \
                       ELSE COALESCE(excluded.payment_failed_at, invoices.payment_failed_at) END, \
                   event_created = excluded.event_created, updated_at = excluded.updated_at \
                   WHERE invoices.event_created <= excluded.event_created";
        let written = on_tx!(self, |conn| sqlx::query(sql)
            .bind(&invoice.stripe_id)
            .bind(&invoice.subscription_id)
            .bind(&invoice.status)
            .bind(&invoice.currency)
            .bind(invoice.total)
            .bind(invoice.amount_due)
            .bind(invoice.amount_paid)
            .bind(invoice.period_start)
            .bind(invoice.period_end)
            .bind(&invoice.number)
            .bind(&invoice.hosted_invoice_url)
            .bind(invoice.payment_failed_at)
            .bind(invoice.event_created)
            .bind(now_ms())
            .execute(conn)
            .await?
            .rows_affected());
        Ok(written == 1)
    }

    /// A subscription's invoices, newest period first.
    pub async fn invoices_of(&mut self, subscription_id: &str) -> StoreResult<Vec<StoredInvoice>> {
        let sql = "SELECT stripe_id, subscription_id, status, currency, total, amount_due, \
                   amount_paid, period_start, period_end, number, hosted_invoice_url, \
                   payment_failed_at, event_created FROM invoices WHERE subscription_id = $1 \
                   ORDER BY period_start DESC, stripe_id DESC";
        Ok(on_tx!(self, |conn| sqlx::query_as(sql)
            .bind(subscription_id)
            .fetch_all(conn)
            .await?))
    }
}
