//! Pure ingest rules: decoding, validation, identifier clean-up and canonicalisation.

pub mod decode;
mod identifiers;
mod local_time;
mod validate;

pub use decode::{JsonEvent, decode_framed, decode_json_event, decode_json_request};
pub use identifiers::DroppedIdentifier;

use crate::config::IngestLimits;
use crate::error::Rejection;
use kinfold_core::CanonicalEvent;
use kinfold_core::event::EventBody;
use kinfold_core::time::TimestampMicros;

/// A source record turned canonical, with the identifiers that were dropped as junk.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonicalised {
    pub event: CanonicalEvent,
    pub dropped: Vec<DroppedIdentifier>,
}

/// Validates `body`, cleans its identifiers and wraps it in the canonical envelope.
pub fn canonicalise(
    mut body: EventBody,
    origin: &str,
    receive_time: TimestampMicros,
    limits: &IngestLimits,
) -> Result<Canonicalised, Rejection> {
    validate::check_fields(&body, limits)?;
    let event_time = local_time::event_time(&body)?;
    validate::check_event_time(event_time, receive_time, limits)?;
    let (identifiers, dropped) = identifiers::extract(&mut body)?;
    let event = CanonicalEvent {
        event_id: body.event_id(),
        event_type: body.event_type(),
        event_time,
        receive_time,
        origin: origin.to_owned(),
        identifiers,
        body,
    };
    Ok(Canonicalised { event, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RejectCode;
    use crate::model::decode::decode_json_event;
    use kinfold_core::IdentifierKind;
    use serde_json::{Value, json};

    /// 2026-11-20T12:00:00Z.
    const RECEIVED: TimestampMicros = 1_795_176_000_000_000;

    fn sale() -> Value {
        json!({
            "type": "pos.transaction", "kind": "SALE", "brand": "b", "store_id": "S1", "till_id": "T1",
            "serial": "42", "business_day": "2026-11-20", "occurred_at_local": "2026-11-20T09:00:00",
            "currency": "CNY", "lines": [{"sku": "A", "quantity": 2, "unit_price_minor": 150}],
            "tenders": [{"kind": "WECHAT_PAY", "amount_minor": 300}],
            "total_minor": 300, "member_card": " M001 ", "phone": "139-1234-5678"
        })
    }

    fn membership(event_type: &str) -> Value {
        json!({
            "type": "membership.event", "event_type": event_type, "brand": "b", "member_card": "M001",
            "event_ref": "r1", "occurred_at": RECEIVED - 1_000_000
        })
    }

    fn check(value: Value) -> Result<Canonicalised, Rejection> {
        let body = decode_json_event(&value.to_string())?;
        canonicalise(body, "test", RECEIVED, &IngestLimits::default())
    }

    fn code_of(value: Value) -> RejectCode {
        check(value).expect_err("rejected").code
    }

    #[test]
    fn a_valid_sale_becomes_canonical_with_clean_identifiers() {
        let canonical = check(sale()).expect("accepted");
        let event = &canonical.event;
        assert_eq!(event.event_type, "pos.sale");
        // 09:00 in Shanghai is 01:00 UTC.
        assert_eq!(event.event_time, RECEIVED - 11 * 3_600 * 1_000_000);
        let kinds: Vec<(IdentifierKind, &str, &str)> = event
            .identifiers
            .iter()
            .map(|id| (id.kind, id.issuer.as_str(), id.value.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (IdentifierKind::MemberCard, "b", "M001"),
                (IdentifierKind::Phone, "86", "+8613912345678"),
            ]
        );
        let EventBody::PosTransaction(transaction) = &event.body else {
            panic!("a pos body");
        };
        assert_eq!(
            transaction.phone.as_deref(),
            Some("+8613912345678"),
            "normalised in the body too"
        );
        assert!(canonical.dropped.is_empty());
    }

    #[test]
    fn the_same_sale_has_the_same_id_however_its_ids_are_written() {
        let mut other = sale();
        other["member_card"] = json!("M001");
        other["phone"] = json!("+86 139 1234 5678");
        other["cashier_id"] = json!("C9");
        let a = check(sale()).expect("accepted").event.event_id;
        let b = check(other).expect("accepted").event.event_id;
        assert_eq!(a, b);
        let mut next = sale();
        next["serial"] = json!("43");
        assert_ne!(a, check(next).expect("accepted").event.event_id);
    }

    #[test]
    fn junk_identifiers_are_dropped_and_the_event_kept() {
        let mut junk = sale();
        junk["member_card"] = json!("undefined");
        junk["phone"] = json!("00000000000");
        let canonical = check(junk).expect("kept");
        assert!(canonical.event.identifiers.is_empty());
        assert_eq!(canonical.dropped.len(), 2);
        let EventBody::PosTransaction(transaction) = &canonical.event.body else {
            panic!("a pos body");
        };
        assert_eq!(transaction.member_card, None);
    }

    #[test]
    fn each_rule_rejects_with_its_code() {
        let with = |path: &[&str], value: Value| {
            let mut event = sale();
            let mut slot = &mut event;
            for key in path {
                slot = if let Ok(index) = key.parse::<usize>() {
                    &mut slot[index]
                } else {
                    &mut slot[*key]
                };
            }
            *slot = value;
            event
        };
        assert_eq!(
            code_of(with(&["store_id"], json!(" "))),
            RejectCode::MissingField
        );
        assert_eq!(
            code_of(with(&["lines"], json!([]))),
            RejectCode::MissingField
        );
        assert_eq!(
            code_of(with(&["total_minor"], json!(-1))),
            RejectCode::InvalidAmount
        );
        assert_eq!(
            code_of(with(&["total_minor"], json!(10_000_000_001i64))),
            RejectCode::InvalidAmount
        );
        assert_eq!(
            code_of(with(&["lines", "0", "quantity"], json!(0))),
            RejectCode::InvalidAmount
        );
        assert_eq!(
            code_of(with(&["lines", "0", "unit_price_minor"], json!(-5))),
            RejectCode::InvalidAmount
        );
        assert_eq!(
            code_of(with(&["tenders", "0", "amount_minor"], json!(-5))),
            RejectCode::InvalidAmount
        );
        assert_eq!(
            code_of(with(&["currency"], json!("RMB1"))),
            RejectCode::InvalidField
        );
        assert_eq!(
            code_of(with(&["business_day"], json!("20/11/2026"))),
            RejectCode::InvalidField
        );
        assert_eq!(
            code_of(with(&["occurred_at_local"], json!("soon"))),
            RejectCode::InvalidField
        );
        assert_eq!(
            code_of(with(&["time_zone"], json!("Asia/Atlantis"))),
            RejectCode::InvalidField
        );
        assert_eq!(
            code_of(with(&["occurred_at_local"], json!("2026-11-22T09:00:00"))),
            RejectCode::InvalidTimestamp
        );
        assert_eq!(
            code_of(with(&["occurred_at_local"], json!("1999-12-31T09:00:00"))),
            RejectCode::InvalidTimestamp
        );
        assert_eq!(
            code_of(with(&["serial"], json!("9".repeat(129)))),
            RejectCode::FieldTooLong
        );
        assert_eq!(
            code_of(with(
                &["lines", "0", "description"],
                json!("d".repeat(1025))
            )),
            RejectCode::FieldTooLong
        );
        assert_eq!(
            code_of(with(&["kind"], json!("GIFT"))),
            RejectCode::Undecodable
        );
        let mut missing = sale();
        missing.as_object_mut().expect("object").remove("till_id");
        assert_eq!(code_of(missing), RejectCode::MissingField);
    }

    #[test]
    fn the_future_skew_limit_is_one_day_by_default() {
        let mut within = sale();
        within["occurred_at_local"] = json!("2026-11-21T19:59:59");
        within["business_day"] = json!("2026-11-21");
        assert!(check(within).is_ok());
        let mut beyond = sale();
        beyond["occurred_at_local"] = json!("2026-11-21T20:00:01");
        assert_eq!(code_of(beyond), RejectCode::InvalidTimestamp);
    }

    #[test]
    fn membership_rules_follow_the_event_type() {
        assert!(check(membership("REGISTERED")).is_ok());
        assert_eq!(
            code_of(membership("POINTS_ADJUSTED")),
            RejectCode::MissingField
        );
        assert_eq!(
            code_of(membership("CONSENT_GRANTED")),
            RejectCode::MissingField
        );
        assert_eq!(
            code_of(membership("COUPON_ISSUED")),
            RejectCode::MissingField
        );
        assert_eq!(
            code_of(membership("TIER_CHANGED")),
            RejectCode::MissingField
        );
        let mut spent = membership("STORED_VALUE_SPENT");
        spent["amount_minor"] = json!(-100);
        spent["currency"] = json!("CNY");
        assert_eq!(code_of(spent), RejectCode::InvalidAmount);
        let mut junk_card = membership("REGISTERED");
        junk_card["member_card"] = json!("null");
        assert_eq!(code_of(junk_card), RejectCode::InvalidField);
        let mut birthday = membership("REGISTERED");
        birthday["birthday"] = json!("1990-02-30");
        assert_eq!(code_of(birthday), RejectCode::InvalidField);
    }

    #[test]
    fn wechat_rules_follow_the_event_type() {
        let event = |event_type: &str| {
            json!({"type": "wechat.event", "event_type": event_type, "app_id": "wxoa", "openid": "o1",
                   "occurred_at": RECEIVED - 1_000_000})
        };
        assert!(check(event("FOLLOW")).is_ok());
        assert_eq!(code_of(event("LOCATION")), RejectCode::MissingField);
        let mut far = event("LOCATION");
        far["latitude"] = json!(91.0);
        far["longitude"] = json!(10.0);
        far["coordinate_system"] = json!("GCJ02");
        assert_eq!(code_of(far), RejectCode::InvalidField);
        assert_eq!(code_of(event("VIEW")), RejectCode::MissingField);
        assert_eq!(code_of(event("PHONE_BOUND")), RejectCode::MissingField);
        assert_eq!(
            code_of(event("WECOM_CONTACT_ADDED")),
            RejectCode::MissingField
        );
        let mut junk_phone = event("PHONE_BOUND");
        junk_phone["phone"] = json!("undefined");
        junk_phone["phone_consent"] = json!(true);
        assert_eq!(code_of(junk_phone), RejectCode::InvalidField);
        let mut no_openid = event("FOLLOW");
        no_openid["openid"] = json!("undefined");
        assert_eq!(code_of(no_openid), RejectCode::InvalidField);
        let mut wecom = event("WECOM_CONTACT_ADDED");
        wecom["corp_id"] = json!("ww1");
        wecom["external_userid"] = json!("wm1");
        wecom["openid"] = Value::Null;
        let canonical = check(wecom).expect("accepted");
        assert_eq!(
            canonical.event.identifiers[0].kind,
            IdentifierKind::WecomExternalUserid
        );
        assert_eq!(canonical.event.identifiers[0].issuer, "ww1");
    }

    #[test]
    fn an_openid_without_its_app_is_dropped() {
        let order = json!({
            "type": "ecom.order", "platform": "TMALL", "brand": "b", "shop_id": "tm1", "order_id": "o1",
            "status": "PAID", "source_version": 2, "occurred_at": RECEIVED - 1_000_000,
            "buyer": {"platform_buyer_id": "omid-1", "wechat_openid": "o1"},
            "currency": "CNY", "items": [{"sku": "A", "quantity": 1, "unit_price_minor": 100}],
            "total_minor": 100
        });
        let canonical = check(order).expect("kept");
        assert_eq!(canonical.event.event_type, "ecom.order.paid");
        assert_eq!(canonical.event.identifiers.len(), 1);
        assert_eq!(
            canonical.event.identifiers[0].kind,
            IdentifierKind::TmallOmid
        );
        assert_eq!(canonical.dropped[0].kind, IdentifierKind::WechatOpenid);
    }
}
