//! What a rule may name: the profile facts (fields) and the functions of the journal and the
//! population, with their types, so that a rule is checked as it is parsed.

/// The type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Number,
    Text,
    Bool,
    /// An instant (`now`, `last_purchase_at`, `now - 90d`).
    Instant,
    Date,
    Duration,
    Distance,
    /// A list of texts or numbers.
    List,
}

impl Type {
    pub fn describe(self) -> &'static str {
        match self {
            Type::Number => "a number",
            Type::Text => "a text",
            Type::Bool => "true or false",
            Type::Instant => "an instant",
            Type::Date => "a date",
            Type::Duration => "a duration",
            Type::Distance => "a distance",
            Type::List => "a list",
        }
    }
}

/// Facts with a fixed name.
const FIELDS: &[(&str, Type)] = &[
    ("events", Type::Number),
    ("orders", Type::Number),
    ("returns", Type::Number),
    ("views", Type::Number),
    ("coupons_redeemed", Type::Number),
    ("net_spend", Type::Number),
    ("gross_spend", Type::Number),
    ("returned_spend", Type::Number),
    ("average_order_value", Type::Number),
    ("lifetime_value", Type::Number),
    ("mean_purchase_interval_days", Type::Number),
    ("coupon_use_rate", Type::Number),
    ("recency_days", Type::Number),
    ("first_purchase_at", Type::Instant),
    ("last_purchase_at", Type::Instant),
    ("last_event_at", Type::Instant),
    ("primary_currency", Type::Text),
    ("rfm.r", Type::Number),
    ("rfm.f", Type::Number),
    ("rfm.m", Type::Number),
];

/// Facts of a named thing: `trait.gender`, `consent.marketing_sms`, `channel.tmall.orders`.
const FAMILIES: &[(&str, &str)] = &[
    (
        "trait",
        "a trait: trait.gender, trait.birthday, trait.home_store, ...",
    ),
    ("consent", "a purpose: consent.marketing_sms"),
    (
        "follows",
        "an official account's app id: follows.wx5d3f1c2b9a7e4410",
    ),
    ("tag", "a tag: tag.vip"),
    ("store", "a store id: store.SH-021 (till purchases there)"),
    ("channel", "a channel and a fact: channel.tmall.orders"),
];

/// The facts kept per channel.
const CHANNEL_FACTS: &[(&str, Type)] = &[
    ("orders", Type::Number),
    ("returns", Type::Number),
    ("net_spend", Type::Number),
    ("first_purchase_at", Type::Instant),
    ("last_purchase_at", Type::Instant),
];

/// The type of the field at `path`, or what is wrong with it.
pub fn field_type(path: &[String]) -> Result<Type, String> {
    let joined = path.join(".");
    if let Some((_, kind)) = FIELDS.iter().find(|(name, _)| *name == joined) {
        return Ok(*kind);
    }
    let family = path[0].as_str();
    let Some((_, what)) = FAMILIES.iter().find(|(name, _)| *name == family) else {
        let names: Vec<&str> = FIELDS.iter().map(|(name, _)| *name).collect();
        return Err(format!(
            "no profile fact `{joined}`; facts are {}, and {}",
            names.join(", "),
            FAMILIES
                .iter()
                .map(|(name, _)| format!("{name}.NAME"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    match (family, path.len()) {
        ("channel", 3) => CHANNEL_FACTS
            .iter()
            .find(|(name, _)| *name == path[2])
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                format!(
                    "a channel has {}",
                    CHANNEL_FACTS
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        ("channel", _) => Err(format!("`{joined}` needs {what}")),
        (_, 2) => Ok(match family {
            "trait" => Type::Text,
            "store" => Type::Number,
            _ => Type::Bool,
        }),
        _ => Err(format!("`{joined}` needs {what}")),
    }
}

/// A function a rule may call.
#[derive(Debug)]
pub struct Function {
    pub name: &'static str,
    pub result: Type,
    /// Positional arguments, each required.
    pub positional: &'static [(&'static str, &'static [Type])],
    /// Named arguments, each optional.
    pub named: &'static [(&'static str, &'static [Type])],
    pub about: &'static str,
}

const TEXTS: &[Type] = &[Type::Text, Type::List];
const FILTERS: [(&str, &[Type]); 5] = [
    ("sku", TEXTS),
    ("category", TEXTS),
    ("store", TEXTS),
    ("channel", TEXTS),
    ("within", &[Type::Duration]),
];

pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "count",
        result: Type::Number,
        positional: &[],
        named: &[
            ("type", TEXTS),
            FILTERS[0],
            FILTERS[1],
            FILTERS[2],
            FILTERS[3],
            FILTERS[4],
        ],
        about: "journal events of a type (purchase, return, view, follow, ...) matching the filters",
    },
    Function {
        name: "spend",
        result: Type::Number,
        positional: &[],
        named: &FILTERS,
        about: "net spend on purchases matching the filters",
    },
    Function {
        name: "bought",
        result: Type::Bool,
        positional: &[],
        named: &FILTERS,
        about: "whether a purchase matches the filters",
    },
    Function {
        name: "percentile",
        result: Type::Number,
        positional: &[("fact", &[Type::Number])],
        named: &[("within", &[Type::Duration])],
        about: "the customer's percentile in the population by a number (0 to 100)",
    },
    Function {
        name: "coupon_expiring_within",
        result: Type::Bool,
        positional: &[("window", &[Type::Duration])],
        named: &[],
        about: "whether a coupon issued to the customer, neither redeemed nor expired, expires within the duration from now",
    },
    Function {
        name: "birthday_within",
        result: Type::Bool,
        positional: &[("days", &[Type::Duration])],
        named: &[],
        about: "whether the birthday trait falls within the duration from now, in the customer's time zone",
    },
    Function {
        name: "distance",
        result: Type::Distance,
        positional: &[],
        named: &[
            ("store", TEXTS),
            ("lat", &[Type::Number]),
            ("lon", &[Type::Number]),
            ("datum", &[Type::Text]),
        ],
        about: "distance from the customer's home location to a point (lat, lon; datum wgs84 or gcj02) or the nearest of the stores",
    },
    Function {
        name: "has",
        result: Type::Bool,
        positional: &[("identifier kind", &[Type::Text])],
        named: &[],
        about: "whether the customer holds an identifier of a kind: has(\"phone\")",
    },
];

/// The function called `name`.
pub fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|function| function.name == name)
}
