//! [`Record`]: one record on its way from the fetch side to the store. Its
//! own module because both use it and neither may import the other.

/// One record, ready to write: its JSON exactly as received, and the values
/// the plan asked for, extracted on the fetch side so the writer thread only
/// writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record's JSON text as the server sent it (valid JSON).
    pub json: String,
    /// Canonical JSON array of the primary key values (`["a",1]`); None
    /// when the job declares no primary key.
    pub pk: Option<String>,
    /// One value per `OutputPlan::columns`, in that order; Null when absent.
    pub columns: Vec<serde_json::Value>,
}
