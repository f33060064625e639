//! Identifiers of a source record: typed, scoped, normalised in place; junk dropped.

use crate::error::{RejectCode, Rejection};
use kinfold_core::event::{Buyer, EventBody, Platform, WechatEventType};
use kinfold_core::{Identifier, IdentifierKind, JunkIdentifier};

/// The default country calling code for phones without one.
pub const DEFAULT_PHONE_COUNTRY: &str = "86";
/// The issuer of WeChat unionids: the brand's open-platform account.
pub const UNIONID_ISSUER: &str = "open_platform";

/// An identifier value that was dropped from a kept event, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedIdentifier {
    pub kind: IdentifierKind,
    pub raw: String,
    pub why: JunkIdentifier,
}

#[derive(Default)]
struct Collector {
    identifiers: Vec<Identifier>,
    dropped: Vec<DroppedIdentifier>,
}

impl Collector {
    /// Normalises `field` in place: a good value is replaced by its normal form and recorded;
    /// junk is cleared and recorded as dropped.
    fn take(&mut self, kind: IdentifierKind, issuer: &str, field: &mut Option<String>) {
        let Some(raw) = field.take() else {
            return;
        };
        match Identifier::parse(kind, issuer, &raw) {
            Ok(identifier) => {
                *field = Some(identifier.value.clone());
                if !self.identifiers.contains(&identifier) {
                    self.identifiers.push(identifier);
                }
            }
            Err(why) => self.dropped.push(DroppedIdentifier { kind, raw, why }),
        }
    }

    /// Like `take`, for a field the event cannot do without.
    fn require(
        &mut self,
        kind: IdentifierKind,
        issuer: &str,
        field: &mut String,
    ) -> Result<(), Rejection> {
        let mut slot = Some(std::mem::take(field));
        self.take(kind, issuer, &mut slot);
        match slot {
            Some(value) => {
                *field = value;
                Ok(())
            }
            None => {
                let dropped = self.dropped.pop().map(|d| (d.raw, d.why.to_string()));
                let (raw, why) = dropped.unwrap_or_default();
                Err(Rejection::new(
                    RejectCode::InvalidField,
                    format!("{kind} `{raw}` is not usable: {why}"),
                ))
            }
        }
    }

    fn buyer(&mut self, platform: Platform, shop_id: &str, brand: &str, buyer: &mut Buyer) {
        let platform_kind = match platform {
            Platform::Youzan => Some(IdentifierKind::YouzanOpenId),
            Platform::Taobao => Some(IdentifierKind::TaobaoOuid),
            Platform::Tmall => Some(IdentifierKind::TmallOmid),
            Platform::Jd => Some(IdentifierKind::JdOpenId),
            Platform::Shopify => Some(IdentifierKind::ShopifyCustomerId),
            Platform::MiniProgram | Platform::Other => None,
        };
        if let Some(kind) = platform_kind {
            self.take(kind, shop_id, &mut buyer.platform_buyer_id);
        }
        self.take(
            IdentifierKind::Phone,
            DEFAULT_PHONE_COUNTRY,
            &mut buyer.phone,
        );
        self.take(IdentifierKind::Email, "", &mut buyer.email);
        self.take(IdentifierKind::MemberCard, brand, &mut buyer.member_card);
        self.take(
            IdentifierKind::WechatUnionid,
            UNIONID_ISSUER,
            &mut buyer.wechat_unionid,
        );
        let app_id = buyer.wechat_app_id.clone().unwrap_or_default();
        if app_id.is_empty() && buyer.wechat_openid.is_some() {
            // An openid means nothing without the app that issued it.
            let raw = buyer.wechat_openid.take().unwrap_or_default();
            self.dropped.push(DroppedIdentifier {
                kind: IdentifierKind::WechatOpenid,
                raw,
                why: JunkIdentifier::Malformed("openid without wechat_app_id"),
            });
        } else {
            self.take(
                IdentifierKind::WechatOpenid,
                &app_id,
                &mut buyer.wechat_openid,
            );
        }
        self.take(IdentifierKind::DeviceId, shop_id, &mut buyer.device_id);
    }
}

/// Normalises the identifier fields of `body` in place and returns the identifiers found and
/// those dropped. Fails only when an identifier the event cannot do without is junk.
pub fn extract(
    body: &mut EventBody,
) -> Result<(Vec<Identifier>, Vec<DroppedIdentifier>), Rejection> {
    let mut collector = Collector::default();
    match body {
        EventBody::PosTransaction(transaction) => {
            collector.take(
                IdentifierKind::MemberCard,
                &transaction.brand,
                &mut transaction.member_card,
            );
            collector.take(
                IdentifierKind::Phone,
                DEFAULT_PHONE_COUNTRY,
                &mut transaction.phone,
            );
        }
        EventBody::EcomOrder(order) => {
            collector.buyer(
                order.platform,
                &order.shop_id,
                &order.brand,
                &mut order.buyer,
            );
        }
        EventBody::EcomRefund(refund) => {
            collector.buyer(
                refund.platform,
                &refund.shop_id,
                &refund.brand,
                &mut refund.buyer,
            );
        }
        EventBody::Wechat(event) => {
            let is_wecom = matches!(
                event.event_type,
                WechatEventType::WecomContactAdded | WechatEventType::WecomContactRemoved
            );
            if is_wecom {
                let corp_id = event.corp_id.clone().unwrap_or_default();
                let mut external = event.external_userid.take().unwrap_or_default();
                collector.require(IdentifierKind::WecomExternalUserid, &corp_id, &mut external)?;
                event.external_userid = Some(external);
                collector.take(
                    IdentifierKind::WechatOpenid,
                    &event.app_id,
                    &mut event.openid,
                );
            } else {
                let mut openid = event.openid.take().unwrap_or_default();
                collector.require(IdentifierKind::WechatOpenid, &event.app_id, &mut openid)?;
                event.openid = Some(openid);
            }
            collector.take(
                IdentifierKind::WechatUnionid,
                UNIONID_ISSUER,
                &mut event.unionid,
            );
            if event.event_type == WechatEventType::PhoneBound {
                // The phone is what this event is about: without a usable one it says nothing.
                let mut phone = event.phone.take().unwrap_or_default();
                collector.require(IdentifierKind::Phone, DEFAULT_PHONE_COUNTRY, &mut phone)?;
                event.phone = Some(phone);
            } else {
                collector.take(
                    IdentifierKind::Phone,
                    DEFAULT_PHONE_COUNTRY,
                    &mut event.phone,
                );
            }
        }
        EventBody::Membership(event) => {
            collector.require(
                IdentifierKind::MemberCard,
                &event.brand,
                &mut event.member_card,
            )?;
            collector.take(
                IdentifierKind::Phone,
                DEFAULT_PHONE_COUNTRY,
                &mut event.phone,
            );
            collector.take(IdentifierKind::Email, "", &mut event.email);
        }
    }
    Ok((collector.identifiers, collector.dropped))
}
