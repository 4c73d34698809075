//! The compact dedupe key of a call record id.

use sha2::{Digest, Sha256};

/// The stored dedupe key of a record id: the 16 bytes of a UUID or ULID, which keeps time-ordered
/// ids (UUIDv7, ULID) in time order in the index; any other id becomes `0xFF` and the first 16 bytes
/// of its SHA-256 (17 bytes, so it can never equal a parsed id).
pub fn record_key(id: &str) -> Vec<u8> {
    if let Some(bytes) = unique_id_bytes(id) {
        return bytes.to_vec();
    }
    let digest = Sha256::digest(id.as_bytes());
    let mut key = Vec::with_capacity(17);
    key.push(0xFF);
    key.extend_from_slice(&digest[..16]);
    key
}

/// The 16 bytes of an id made to be unique everywhere (a UUID or a ULID), if it is one.
fn unique_id_bytes(id: &str) -> Option<[u8; 16]> {
    if let Ok(uuid) = uuid::Uuid::try_parse(id) {
        return Some(*uuid.as_bytes());
    }
    if id.len() == 26
        && let Ok(ulid) = ulid::Ulid::from_string(id)
    {
        return Some(ulid.to_bytes());
    }
    None
}

/// Whether an id is unique everywhere by its making (a UUID or a ULID), so that no sender's
/// name is needed beside it to tell it apart.
pub fn is_unique_everywhere(id: &str) -> bool {
    unique_id_bytes(id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_ulids_keep_their_bytes_and_order() {
        let earlier = uuid::Uuid::now_v7();
        let later = uuid::Uuid::now_v7();
        assert_eq!(
            record_key(&earlier.to_string()),
            earlier.as_bytes().to_vec()
        );
        assert!(record_key(&earlier.to_string()) < record_key(&later.to_string()));
        let ulid = ulid::Ulid::new();
        assert_eq!(record_key(&ulid.to_string()).len(), 16);
    }

    #[test]
    fn other_ids_hash_to_a_distinct_length() {
        let key = record_key("req-123");
        assert_eq!(key.len(), 17);
        assert_eq!(key[0], 0xFF);
        assert_eq!(key, record_key("req-123"));
        assert_ne!(key, record_key("req-124"));
    }
}
