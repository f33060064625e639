//! Field rules of every family, each failure with a reason.

use crate::config::IngestLimits;
use crate::error::{RejectCode, Rejection};
use kinfold_core::event::{EventBody, MembershipEventType, OrderItem, PosLine, WechatEventType};
use kinfold_core::money::is_currency_code;
use kinfold_core::time::TimestampMicros;

struct Checker<'a> {
    limits: &'a IngestLimits,
}

impl Checker<'_> {
    fn id(&self, name: &str, value: &str) -> Result<(), Rejection> {
        if value.trim().is_empty() {
            return Err(Rejection::new(
                RejectCode::MissingField,
                format!("{name} is empty"),
            ));
        }
        self.length(name, value, self.limits.max_id_len)
    }

    fn length(&self, name: &str, value: &str, max: usize) -> Result<(), Rejection> {
        if value.len() > max {
            return Err(Rejection::new(
                RejectCode::FieldTooLong,
                format!("{name} is {} bytes, more than {max}", value.len()),
            ));
        }
        Ok(())
    }

    fn optional_id(&self, name: &str, value: Option<&String>) -> Result<(), Rejection> {
        value.map_or(Ok(()), |value| {
            self.length(name, value, self.limits.max_id_len)
        })
    }

    fn text(&self, name: &str, value: Option<&String>) -> Result<(), Rejection> {
        value.map_or(Ok(()), |value| {
            self.length(name, value, self.limits.max_text_len)
        })
    }

    fn amount(&self, name: &str, minor: i64) -> Result<(), Rejection> {
        if minor < 0 {
            return Err(Rejection::new(
                RejectCode::InvalidAmount,
                format!("{name} is negative ({minor})"),
            ));
        }
        if minor > self.limits.max_amount_minor {
            return Err(Rejection::new(
                RejectCode::InvalidAmount,
                format!(
                    "{name} of {minor} exceeds the limit of {}",
                    self.limits.max_amount_minor
                ),
            ));
        }
        Ok(())
    }

    fn quantity(&self, name: &str, quantity: i64) -> Result<(), Rejection> {
        if quantity < 1 || quantity > self.limits.max_quantity {
            return Err(Rejection::new(
                RejectCode::InvalidAmount,
                format!(
                    "{name} {quantity} is outside 1..={}",
                    self.limits.max_quantity
                ),
            ));
        }
        Ok(())
    }

    fn currency(&self, value: &str) -> Result<(), Rejection> {
        if !is_currency_code(value) {
            return Err(Rejection::new(
                RejectCode::InvalidField,
                format!("currency `{value}` is not an ISO 4217 code"),
            ));
        }
        Ok(())
    }

    fn line_count(&self, name: &str, count: usize) -> Result<(), Rejection> {
        if count > self.limits.max_lines {
            return Err(Rejection::new(
                RejectCode::FieldTooLong,
                format!("{count} {name}, more than {}", self.limits.max_lines),
            ));
        }
        Ok(())
    }

    fn pos_line(&self, index: usize, line: &PosLine) -> Result<(), Rejection> {
        self.id(&format!("lines[{index}].sku"), &line.sku)?;
        self.text(
            &format!("lines[{index}].description"),
            line.description.as_ref(),
        )?;
        self.optional_id(&format!("lines[{index}].category"), line.category.as_ref())?;
        self.quantity(&format!("lines[{index}].quantity"), line.quantity)?;
        self.amount(
            &format!("lines[{index}].unit_price_minor"),
            line.unit_price_minor,
        )?;
        self.amount(
            &format!("lines[{index}].discount_minor"),
            line.discount_minor,
        )
    }

    fn order_item(&self, index: usize, item: &OrderItem) -> Result<(), Rejection> {
        self.id(&format!("items[{index}].sku"), &item.sku)?;
        self.text(&format!("items[{index}].title"), item.title.as_ref())?;
        self.optional_id(&format!("items[{index}].category"), item.category.as_ref())?;
        self.quantity(&format!("items[{index}].quantity"), item.quantity)?;
        self.amount(
            &format!("items[{index}].unit_price_minor"),
            item.unit_price_minor,
        )?;
        self.amount(
            &format!("items[{index}].discount_minor"),
            item.discount_minor,
        )
    }

    fn required<'v, T>(
        &self,
        name: &str,
        value: Option<&'v T>,
        event_type: &str,
    ) -> Result<&'v T, Rejection> {
        value.ok_or_else(|| {
            Rejection::new(
                RejectCode::MissingField,
                format!("{name} is required for {event_type}"),
            )
        })
    }
}

/// Checks required fields, lengths, amounts and codes of `body`.
pub fn check_fields(body: &EventBody, limits: &IngestLimits) -> Result<(), Rejection> {
    let check = Checker { limits };
    match body {
        EventBody::PosTransaction(t) => {
            check.id("brand", &t.brand)?;
            check.id("store_id", &t.store_id)?;
            check.id("till_id", &t.till_id)?;
            check.id("serial", &t.serial)?;
            check.id("business_day", &t.business_day)?;
            check.id("occurred_at_local", &t.occurred_at_local)?;
            check.optional_id("time_zone", t.time_zone.as_ref())?;
            check.currency(&t.currency)?;
            if t.lines.is_empty() {
                return Err(Rejection::new(
                    RejectCode::MissingField,
                    "a transaction needs at least one line",
                ));
            }
            check.line_count("lines", t.lines.len())?;
            check.line_count("tenders", t.tenders.len())?;
            for (index, line) in t.lines.iter().enumerate() {
                check.pos_line(index, line)?;
            }
            for (index, tender) in t.tenders.iter().enumerate() {
                check.amount(
                    &format!("tenders[{index}].amount_minor"),
                    tender.amount_minor,
                )?;
                check.optional_id(
                    &format!("tenders[{index}].reference"),
                    tender.reference.as_ref(),
                )?;
            }
            check.amount("total_minor", t.total_minor)?;
            for (name, value) in [
                ("cashier_id", &t.cashier_id),
                ("guide_id", &t.guide_id),
                ("original_serial", &t.original_serial),
                ("member_card", &t.member_card),
                ("phone", &t.phone),
            ] {
                check.optional_id(name, value.as_ref())?;
            }
        }
        EventBody::EcomOrder(o) => {
            check.id("brand", &o.brand)?;
            check.id("shop_id", &o.shop_id)?;
            check.id("order_id", &o.order_id)?;
            check.currency(&o.currency)?;
            if o.source_version < 0 {
                return Err(Rejection::new(
                    RejectCode::InvalidField,
                    "source_version is negative",
                ));
            }
            check.line_count("items", o.items.len())?;
            check.line_count("coupons", o.coupons.len())?;
            for (index, item) in o.items.iter().enumerate() {
                check.order_item(index, item)?;
            }
            for (index, coupon) in o.coupons.iter().enumerate() {
                check.id(&format!("coupons[{index}]"), coupon)?;
            }
            check.amount("total_minor", o.total_minor)?;
            check.amount("paid_minor", o.paid_minor)?;
        }
        EventBody::EcomRefund(r) => {
            check.id("brand", &r.brand)?;
            check.id("shop_id", &r.shop_id)?;
            check.id("order_id", &r.order_id)?;
            check.id("refund_id", &r.refund_id)?;
            check.currency(&r.currency)?;
            check.amount("amount_minor", r.amount_minor)?;
            check.line_count("items", r.items.len())?;
            for (index, item) in r.items.iter().enumerate() {
                check.order_item(index, item)?;
            }
            check.text("reason", r.reason.as_ref())?;
        }
        EventBody::Wechat(w) => {
            let event_type = w.event_type.as_str();
            check.id("app_id", &w.app_id)?;
            for (name, value) in [
                ("msg_id", &w.msg_id),
                ("scene", &w.scene),
                ("corp_id", &w.corp_id),
                ("guide_id", &w.guide_id),
                ("sku", &w.sku),
            ] {
                check.optional_id(name, value.as_ref())?;
            }
            check.text("page", w.page.as_ref())?;
            match w.event_type {
                WechatEventType::Location => {
                    let latitude = *check.required("latitude", w.latitude.as_ref(), event_type)?;
                    let longitude =
                        *check.required("longitude", w.longitude.as_ref(), event_type)?;
                    check.required(
                        "coordinate_system",
                        w.coordinate_system.as_ref(),
                        event_type,
                    )?;
                    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude)
                    {
                        return Err(Rejection::new(
                            RejectCode::InvalidField,
                            format!("coordinates ({latitude}, {longitude}) are not on earth"),
                        ));
                    }
                }
                WechatEventType::PhoneBound => {
                    check.required("phone", w.phone.as_ref(), event_type)?;
                    check.required("phone_consent", w.phone_consent.as_ref(), event_type)?;
                }
                WechatEventType::WecomContactAdded | WechatEventType::WecomContactRemoved => {
                    check.id(
                        "corp_id",
                        check.required("corp_id", w.corp_id.as_ref(), event_type)?,
                    )?;
                    check.required("external_userid", w.external_userid.as_ref(), event_type)?;
                }
                WechatEventType::View => {
                    if w.page.is_none() && w.sku.is_none() {
                        return Err(Rejection::new(
                            RejectCode::MissingField,
                            "a view needs a page or a sku",
                        ));
                    }
                }
                WechatEventType::Follow
                | WechatEventType::Unfollow
                | WechatEventType::MiniProgramLogin => {}
            }
        }
        EventBody::Membership(m) => {
            let event_type = m.event_type.as_str();
            check.id("brand", &m.brand)?;
            check.id("member_card", &m.member_card)?;
            check.id("event_ref", &m.event_ref)?;
            for (name, value) in [
                ("gender", &m.gender),
                ("home_store", &m.home_store),
                ("consent_purpose", &m.consent_purpose),
                ("consent_channel", &m.consent_channel),
                ("coupon_id", &m.coupon_id),
                ("coupon_campaign", &m.coupon_campaign),
                ("tier", &m.tier),
                ("store_id", &m.store_id),
            ] {
                check.optional_id(name, value.as_ref())?;
            }
            check.text("name", m.name.as_ref())?;
            check.text("reason", m.reason.as_ref())?;
            if let Some(birthday) = &m.birthday
                && chrono::NaiveDate::parse_from_str(birthday, "%Y-%m-%d").is_err()
            {
                return Err(Rejection::new(
                    RejectCode::InvalidField,
                    format!("birthday `{birthday}` is not YYYY-MM-DD"),
                ));
            }
            if let Some(currency) = &m.currency {
                check.currency(currency)?;
            }
            match m.event_type {
                MembershipEventType::ConsentGranted | MembershipEventType::ConsentWithdrawn => {
                    check.required("consent_purpose", m.consent_purpose.as_ref(), event_type)?;
                }
                MembershipEventType::PointsAdjusted => {
                    let delta =
                        *check.required("points_delta", m.points_delta.as_ref(), event_type)?;
                    if delta.unsigned_abs() > limits.max_amount_minor.unsigned_abs() {
                        return Err(Rejection::new(
                            RejectCode::InvalidAmount,
                            format!("points_delta {delta} is absurd"),
                        ));
                    }
                }
                MembershipEventType::CouponIssued
                | MembershipEventType::CouponRedeemed
                | MembershipEventType::CouponExpired => {
                    check.required("coupon_id", m.coupon_id.as_ref(), event_type)?;
                }
                MembershipEventType::StoredValueToppedUp
                | MembershipEventType::StoredValueSpent => {
                    let amount =
                        *check.required("amount_minor", m.amount_minor.as_ref(), event_type)?;
                    check.amount("amount_minor", amount)?;
                    check.required("currency", m.currency.as_ref(), event_type)?;
                }
                MembershipEventType::TierChanged => {
                    check.required("tier", m.tier.as_ref(), event_type)?;
                }
                MembershipEventType::Registered | MembershipEventType::ProfileUpdated => {}
            }
        }
    }
    Ok(())
}

/// An event time must be after the configured earliest and not far after its receive time.
pub fn check_event_time(
    event_time: TimestampMicros,
    receive_time: TimestampMicros,
    limits: &IngestLimits,
) -> Result<(), Rejection> {
    if event_time < limits.min_event_time_micros {
        return Err(Rejection::new(
            RejectCode::InvalidTimestamp,
            format!(
                "event time {event_time} µs is before {} µs",
                limits.min_event_time_micros
            ),
        ));
    }
    let latest = receive_time.saturating_add(limits.max_future_skew_secs.saturating_mul(1_000_000));
    if event_time > latest {
        return Err(Rejection::new(
            RejectCode::InvalidTimestamp,
            format!(
                "event time is {} s after it was received, more than the {} s allowed",
                (event_time - receive_time) / 1_000_000,
                limits.max_future_skew_secs
            ),
        ));
    }
    Ok(())
}
