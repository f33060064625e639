//! A deterministic synthetic event generator: a Chinese retail chain's POS, e-commerce, WeChat
//! and membership events, in fen and CNY, for benchmarks and load tests.
//!
//! The same [`GeneratorConfig`] always gives the same sequence: every random draw comes from one
//! `StdRng` seeded with `seed`, and the population's identifiers are pure functions of the seed
//! and the customer's index, so no per-customer strings are kept in memory.
//!
//! What the stream looks like:
//! - a population of `customers` people, each with a stable mainland mobile number (unique per
//!   person), a member card for about 70% (some of whom register during the stream), a WeChat
//!   unionid for about 60%, openids per app, some Tmall / JD / Youzan buyer ids and emails;
//! - POS sales and returns in 20 stores (`S001`..`S020`, tills `T1`..`T4`, open 10:00 to 22:00
//!   Asia/Shanghai), with about 3% of till-days offline and uploaded hours to days later;
//! - e-commerce orders moving through created, paid, shipped and completed (source versions 1 to
//!   4) or cancelled after created, and refunds for about 5% of completed orders;
//! - WeChat follows, unfollows, mini-program logins and views, phone bindings, locations and
//!   WeCom contacts;
//! - membership registrations, profile updates, consents, points, coupons, stored value and
//!   tiers, some of them caused by the POS sales (points earned, stored value spent);
//! - junk identifiers (`"null"`, `"0"`, test numbers, ...) on about 2% of events, and a few store
//!   iPads shared by many online buyers.
//!
//! Events come out in increasing emission time; their event time is the same except for late
//! POS uploads. The first window (`start_micros` plus `days`) holds about
//! `customers * 0.55 * days` events (POS about 30%, then membership, WeChat and e-commerce), all
//! with event times inside it; after that the calendar simply carries on into the following days
//! with the same population, so the stream never ends and ids never repeat. To draw millions of
//! events inside one window, raise `customers`.
//!
//! `Generator` is also an [`Iterator`]; [`Generator::take_events`] collects the next `n` events
//! into a `Vec`.

use kinfold_core::event::{
    Buyer, CoordinateSystem, EcomOrder, EcomRefund, EventBody, MembershipEvent,
    MembershipEventType, OrderItem, OrderStatus, Platform, PosLine, PosTransaction,
    PosTransactionKind, Tender, TenderKind, WechatEvent, WechatEventType,
};
use kinfold_core::time::TimestampMicros;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Asia/Shanghai is UTC+8 all year.
const SHANGHAI_OFFSET: i64 = 8 * HOUR;

/// The currency of every amount.
pub const CURRENCY: &str = "CNY";
/// The brand's WeChat official account.
pub const OFFICIAL_ACCOUNT_APP_ID: &str = "wxoa0001";
/// The brand's WeChat mini program (also its own online mall).
pub const MINI_PROGRAM_APP_ID: &str = "wxmp0001";
/// The brand's WeCom corp, whose store guides add customers as contacts.
pub const WECOM_CORP_ID: &str = "ww0001";
/// The number of stores, `S001` to `S020`.
pub const STORE_COUNT: usize = 20;
/// The tills of every store.
pub const TILLS: [&str; 4] = ["T1", "T2", "T3", "T4"];
/// Junk phone values the generator puts on about 2% of events.
pub const JUNK_PHONES: [&str; 6] = ["null", "undefined", "0", "00000000000", "13800138000", ""];
/// Junk member card values the generator puts on some events.
pub const JUNK_MEMBER_CARDS: [&str; 5] = ["0", "", "null", "undefined", "00000000"];
/// Store iPads that staff hand to customers to order online: shared devices.
pub const SHARED_DEVICES: [&str; 5] = [
    "ipad-S001",
    "ipad-S002",
    "ipad-S003",
    "ipad-S004",
    "ipad-S005",
];

/// Activities (a sale, an order, a WeChat session, ...) per customer per day, on weekdays.
const ACTIVITIES_PER_CUSTOMER_DAY: f64 = 0.3;
/// Saturdays and Sundays are busier.
const WEEKEND_FACTOR: f64 = 1.3;
/// Relative activity by local hour of day.
const HOUR_WEIGHTS: [f64; 24] = [
    2.0, 1.0, 0.5, 0.3, 0.3, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 8.0, 7.0, 7.0, 7.0, 8.0, 9.0,
    10.0, 10.0, 9.0, 6.0, 4.0,
];
/// Stores open at 10:00 and close at 22:00 local time.
const STORE_OPEN_HOUR: i64 = 10;
const STORE_CLOSE_HOUR: i64 = 22;
/// Activity mix while stores are open and closed: POS sale, POS return, online order, WeChat,
/// membership.
const OPEN_MIX: [u32; 5] = [58, 2, 6, 21, 13];
const CLOSED_MIX: [u32; 5] = [0, 0, 22, 56, 22];
/// Chance that an identifier a source captured is replaced by junk.
const JUNK_CHANCE: f64 = 0.05;
/// Per mille of till-days whose till is offline and uploads late.
const OFFLINE_TILL_DAYS_PER_MILLE: u64 = 30;

/// Mainland mobile prefixes used for the population's phones.
const PHONE_PREFIXES: [u64; 29] = [
    130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158, 159,
    180, 181, 182, 183, 184, 185, 186, 187, 188, 189,
];
/// National numbers that identity resolution treats as test values; never given to a person.
const TEST_NATIONAL_NUMBERS: [u64; 3] = [13_800_138_000, 13_888_888_888, 18_888_888_888];
/// Multipliers of the bijections that spread indices over 8-digit suffixes (coprime to 10^8).
const PHONE_MULTIPLIER: u64 = 73_939_133;
const CARD_MULTIPLIER: u64 = 31_415_927;
const EIGHT_DIGITS: u64 = 100_000_000;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
const TOKEN_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Categories: name, SKU prefix, price range in fen, products.
const CATEGORIES: [(&str, &str, i64, i64, [&str; 5]); 10] = [
    (
        "apparel",
        "AP",
        9_900,
        49_900,
        [
            "Cotton Tee",
            "Linen Shirt",
            "Down Jacket",
            "Wool Sweater",
            "Wide-leg Trousers",
        ],
    ),
    (
        "footwear",
        "FW",
        19_900,
        50_000,
        [
            "Canvas Sneaker",
            "Leather Loafer",
            "Running Shoe",
            "Ankle Boot",
            "Slide Sandal",
        ],
    ),
    (
        "bags",
        "BG",
        12_900,
        45_000,
        [
            "Tote Bag",
            "Crossbody Bag",
            "Backpack",
            "Card Holder",
            "Weekender",
        ],
    ),
    (
        "skincare",
        "SK",
        5_900,
        39_900,
        [
            "Hydrating Toner",
            "Vitamin C Serum",
            "Night Cream",
            "Sunscreen SPF50",
            "Cleansing Foam",
        ],
    ),
    (
        "cosmetics",
        "CM",
        3_900,
        29_900,
        [
            "Lipstick",
            "Cushion Foundation",
            "Eyeshadow Palette",
            "Brow Pencil",
            "Setting Spray",
        ],
    ),
    (
        "home",
        "HM",
        1_900,
        29_900,
        [
            "Aroma Diffuser",
            "Linen Cushion",
            "Ceramic Vase",
            "Throw Blanket",
            "Scented Candle",
        ],
    ),
    (
        "kitchen",
        "KT",
        1_500,
        19_900,
        [
            "Glass Teapot",
            "Ceramic Mug",
            "Bamboo Board",
            "Chef Knife",
            "Lunch Box",
        ],
    ),
    (
        "snacks",
        "SN",
        500,
        6_900,
        [
            "Dried Mango",
            "Roasted Almonds",
            "Sesame Crisps",
            "Rice Crackers",
            "Dark Chocolate",
        ],
    ),
    (
        "tea",
        "TE",
        2_800,
        29_800,
        [
            "Longjing Green Tea",
            "Tieguanyin Oolong",
            "Pu-erh Cake",
            "Jasmine Tea",
            "Dianhong Black Tea",
        ],
    ),
    (
        "stationery",
        "ST",
        500,
        4_900,
        [
            "Gel Pen Set",
            "Dot Grid Notebook",
            "Washi Tape",
            "Desk Planner",
            "Fountain Pen",
        ],
    ),
];
const EDITIONS: [&str; 4] = ["Classic", "2026 Edition", "Limited", "Gift Box"];
/// How often each category is bought.
const CATEGORY_WEIGHTS: [u32; 10] = [16, 8, 6, 12, 10, 9, 8, 14, 10, 7];

const SURNAMES: [(&str, &str); 16] = [
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
    ("马", "ma"),
    ("朱", "zhu"),
    ("胡", "hu"),
    ("郭", "guo"),
];
const FEMALE_NAMES: [(&str, &str); 10] = [
    ("芳", "fang"),
    ("娜", "na"),
    ("静", "jing"),
    ("丽", "li"),
    ("婷", "ting"),
    ("雪", "xue"),
    ("悦", "yue"),
    ("欣怡", "xinyi"),
    ("梓涵", "zihan"),
    ("诗琪", "shiqi"),
];
const MALE_NAMES: [(&str, &str); 10] = [
    ("伟", "wei"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("勇", "yong"),
    ("杰", "jie"),
    ("浩然", "haoran"),
    ("子轩", "zixuan"),
    ("宇航", "yuhang"),
];
const EMAIL_DOMAINS: [&str; 5] = ["qq.com", "163.com", "126.com", "gmail.com", "outlook.com"];
const CAMPAIGN_SCENES: [&str; 4] = [
    "campaign:double11",
    "campaign:cny2026",
    "campaign:spring-launch",
    "campaign:member-day",
];
const COUPON_CAMPAIGNS: [&str; 5] = [
    "birthday",
    "member-day",
    "cny2026",
    "spring-launch",
    "win-back",
];
const CONSENT_PURPOSES: [&str; 3] = ["marketing_sms", "marketing_wechat", "profiling"];
const TIERS: [&str; 3] = ["silver", "gold", "platinum"];
const PAGES: [&str; 6] = [
    "pages/index/index",
    "pages/category/list",
    "pages/product/detail",
    "pages/member/center",
    "pages/coupon/list",
    "pages/store/locator",
];
const REFUND_REASONS: [&str; 5] = [
    "size does not fit",
    "quality issue",
    "changed mind",
    "damaged in transit",
    "seven-day no-reason return",
];

/// What to generate. Two generators with equal configs produce equal sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// The number of people in the population (at least 1 is used).
    pub customers: u32,
    /// The seed of every random draw.
    pub seed: u64,
    /// The start of the first window, UTC microseconds.
    pub start_micros: i64,
    /// The length of the first window in days (at least 1 is used).
    pub days: u32,
    /// The brand: issuer of member cards, owner of stores and shops. Must not be empty.
    pub brand: String,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            customers: 1000,
            seed: 7,
            start_micros: days_from_civil(2026, 1, 1) * DAY,
            days: 90,
            brand: "kinfold-demo".to_owned(),
        }
    }
}

/// A product of the fixed catalog.
#[derive(Debug, Clone)]
struct Sku {
    code: String,
    title: String,
    category: &'static str,
    price: i64,
}

/// The fixed catalog: 10 categories of 20 SKUs, the same for every seed.
fn catalog() -> Vec<Sku> {
    let mut skus = Vec::with_capacity(CATEGORIES.len() * 20);
    for (category_index, (category, prefix, low, high, products)) in CATEGORIES.iter().enumerate() {
        for (product_index, product) in products.iter().enumerate() {
            for (edition_index, edition) in EDITIONS.iter().enumerate() {
                let number = product_index * EDITIONS.len() + edition_index;
                let key = (category_index * 100 + number) as u64;
                let spread = (high - low) as u64;
                let raw = *low + (mix64(key.wrapping_add(0x5eed)) % spread) as i64;
                // Shelf prices end in 90 fen.
                let mut price = raw / 100 * 100 + 90;
                if price > *high {
                    price -= 100;
                }
                skus.push(Sku {
                    code: format!("{prefix}-{:03}", number + 1),
                    title: format!("{product} {edition}"),
                    category,
                    price: price.clamp(500, 50_000),
                });
            }
        }
    }
    skus
}

/// A customer's fixed traits, derived from the seed and their index.
#[derive(Debug, Clone, Copy)]
struct Traits {
    index: u32,
    has_card: bool,
    joins_late: bool,
    wechat: bool,
    unionid: bool,
    tmall: bool,
    jd: bool,
    youzan: bool,
    email: bool,
    home_store: usize,
    female: bool,
    favourite_category: usize,
    guide: usize,
    personal_device: bool,
    name_bits: u64,
}

/// Per-customer state that events change.
#[derive(Debug, Clone, Copy, Default)]
struct CustomerState {
    flags: u8,
    points: i64,
    stored_value: i64,
}

const REGISTERED: u8 = 1;
const FOLLOWING: u8 = 1 << 1;
const WECOM_CONTACT: u8 = 1 << 2;
/// Bits 3..6: consent per purpose of `CONSENT_PURPOSES`.
const CONSENT_SHIFT: u8 = 3;

/// Seeds of the identifier families, derived from the config seed.
#[derive(Debug, Clone, Copy)]
struct Salts {
    traits: u64,
    phone: u64,
    card: u64,
    unionid: u64,
    official_account: u64,
    mini_program: u64,
    external_userid: u64,
    tmall: u64,
    jd: u64,
    youzan: u64,
    device: u64,
    offline: u64,
}

impl Salts {
    fn new(seed: u64) -> Self {
        let salt = |n: u64| mix64(seed ^ n.wrapping_mul(GOLDEN));
        Self {
            traits: salt(1),
            phone: salt(2),
            card: salt(3),
            unionid: salt(4),
            official_account: salt(5),
            mini_program: salt(6),
            external_userid: salt(7),
            tmall: salt(8),
            jd: salt(9),
            youzan: salt(10),
            device: salt(11),
            offline: salt(12),
        }
    }
}

/// A sale kept so that a later return can refer to it.
#[derive(Debug, Clone)]
struct RecentSale {
    customer: u32,
    at: i64,
    store: usize,
    serial: String,
    lines: Vec<PosLine>,
    member_card: Option<String>,
    phone: Option<String>,
    tender: TenderKind,
    earned_points: bool,
}

/// An event waiting for its emission time.
#[derive(Debug)]
struct Pending {
    at: i64,
    seq: u64,
    body: EventBody,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed, so that the max-heap pops the earliest emission first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .cmp(&self.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Monotonic counters behind the unique ids.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    order: u64,
    refund: u64,
    msg: u64,
    event_ref: u64,
    coupon: u64,
    payment: u64,
}

/// The synthetic event stream. See the module documentation.
#[derive(Debug)]
pub struct Generator {
    config: GeneratorConfig,
    customers: u32,
    rng: StdRng,
    salts: Salts,
    catalog: Vec<Sku>,
    stores: Vec<String>,
    state: Vec<CustomerState>,
    pending: BinaryHeap<Pending>,
    seq: u64,
    next_activity_at: i64,
    /// Peak activity rate, per microsecond, for thinning.
    peak_rate: f64,
    /// Per store and till: the local business day and the last serial of that day.
    tills: Vec<(i64, u32)>,
    recent_sales: Vec<RecentSale>,
    recent_capacity: usize,
    counters: Counters,
}

impl Generator {
    /// A generator for `config`.
    pub fn new(config: GeneratorConfig) -> Self {
        let customers = config.customers.max(1);
        let salts = Salts::new(config.seed);
        let peak_weight = HOUR_WEIGHTS.iter().copied().fold(0.0, f64::max);
        let weight_sum: f64 = HOUR_WEIGHTS.iter().sum();
        let per_day = f64::from(customers) * ACTIVITIES_PER_CUSTOMER_DAY;
        let peak_rate = per_day * peak_weight / weight_sum * WEEKEND_FACTOR / HOUR as f64;
        let mut generator = Self {
            customers,
            rng: StdRng::seed_from_u64(config.seed),
            salts,
            catalog: catalog(),
            stores: (1..=STORE_COUNT).map(|n| format!("S{n:03}")).collect(),
            state: Vec::new(),
            pending: BinaryHeap::new(),
            seq: 0,
            next_activity_at: config.start_micros,
            peak_rate,
            tills: vec![(i64::MIN, 0); STORE_COUNT * TILLS.len()],
            recent_sales: Vec::new(),
            recent_capacity: (customers as usize / 2).clamp(64, 65_536),
            counters: Counters::default(),
            config,
        };
        generator.state = (0..customers)
            .map(|index| generator.initial_state(index))
            .collect();
        generator.next_activity_at = generator.draw_activity_time(generator.config.start_micros);
        generator
    }

    /// Next event in roughly increasing event time; never ends (wraps time forward).
    pub fn next_event(&mut self) -> EventBody {
        loop {
            if self
                .pending
                .peek()
                .is_some_and(|pending| pending.at <= self.next_activity_at)
                && let Some(pending) = self.pending.pop()
            {
                return pending.body;
            }
            let at = self.next_activity_at;
            self.run_activity(at);
            self.next_activity_at = self.draw_activity_time(at);
        }
    }

    /// Convenience: the first n events.
    pub fn take_events(&mut self, n: usize) -> Vec<EventBody> {
        (0..n).map(|_| self.next_event()).collect()
    }

    // ---- time and dispatch -------------------------------------------------------------------

    /// The next activity after `after`: a non-homogeneous Poisson process by thinning.
    fn draw_activity_time(&mut self, after: i64) -> i64 {
        let peak_weight = HOUR_WEIGHTS.iter().copied().fold(0.0, f64::max) * WEEKEND_FACTOR;
        let mut t = after;
        loop {
            let u: f64 = self.rng.random();
            let gap = (-(1.0 - u).ln() / self.peak_rate).ceil() as i64;
            t = t.saturating_add(gap.max(1));
            let local = t + SHANGHAI_OFFSET;
            let hour = local.rem_euclid(DAY) / HOUR;
            let weekday = (local.div_euclid(DAY) + 3).rem_euclid(7); // 0 = Monday
            let factor = if weekday >= 5 { WEEKEND_FACTOR } else { 1.0 };
            let weight = HOUR_WEIGHTS[hour as usize] * factor;
            if self.rng.random::<f64>() * peak_weight < weight {
                return t;
            }
        }
    }

    fn run_activity(&mut self, t: i64) {
        let hour = (t + SHANGHAI_OFFSET).rem_euclid(DAY) / HOUR;
        let open = (STORE_OPEN_HOUR..STORE_CLOSE_HOUR).contains(&hour);
        let mix = if open { &OPEN_MIX } else { &CLOSED_MIX };
        match pick_weighted(&mut self.rng, mix) {
            0 => self.pos_sale(t),
            1 => self.pos_return(t),
            2 => self.ecom_order(t),
            3 => self.wechat(t),
            _ => self.membership(t),
        }
    }

    fn emit(&mut self, at: i64, body: EventBody) {
        self.seq += 1;
        self.pending.push(Pending {
            at,
            seq: self.seq,
            body,
        });
    }

    // ---- population ----------------------------------------------------------------------------

    fn traits(&self, index: u32) -> Traits {
        let h1 = mix64(self.salts.traits.wrapping_add(u64::from(index)));
        let h2 = mix64(h1 ^ GOLDEN);
        let h3 = mix64(h2 ^ GOLDEN);
        let has_card = chance(chunk(h1, 0), 70);
        let wechat = chance(chunk(h1, 2), 85);
        Traits {
            index,
            has_card,
            joins_late: has_card && chance(chunk(h1, 1), 25),
            wechat,
            unionid: wechat && chance(chunk(h1, 3), 71),
            tmall: chance(chunk(h1, 4), 35),
            jd: chance(chunk(h1, 5), 25),
            youzan: chance(chunk(h2, 0), 15),
            email: chance(chunk(h2, 1), 25),
            home_store: (chunk(h2, 2) % STORE_COUNT as u64) as usize,
            female: chance(chunk(h2, 3), 62),
            favourite_category: (chunk(h2, 4) % CATEGORIES.len() as u64) as usize,
            guide: (chunk(h2, 5) % 4) as usize,
            personal_device: chance(chunk(h3, 0), 30),
            name_bits: h3,
        }
    }

    fn initial_state(&self, index: u32) -> CustomerState {
        let traits = self.traits(index);
        let h = mix64(traits.name_bits ^ 0x57a7e);
        let mut flags = 0;
        let registered = traits.has_card && !traits.joins_late;
        if registered {
            flags |= REGISTERED;
            for (purpose, percent) in [60, 50, 40].into_iter().enumerate() {
                if chance(chunk(h, purpose as u32), percent) {
                    flags |= 1 << (CONSENT_SHIFT + purpose as u8);
                }
            }
        }
        if traits.wechat && chance(chunk(h, 3), 55) {
            flags |= FOLLOWING;
        }
        if traits.wechat && chance(chunk(h, 4), 20) {
            flags |= WECOM_CONTACT;
        }
        let points = if registered {
            (h >> 50) as i64 % 3000
        } else {
            0
        };
        let stored_value = if registered && chance(chunk(h, 5), 20) {
            ((h >> 40) % 50) as i64 * 2_000
        } else {
            0
        };
        CustomerState {
            flags,
            points,
            stored_value,
        }
    }

    /// Picks a customer: mostly uniform, with a heavy tail of frequent buyers.
    fn pick_customer(&mut self) -> u32 {
        let u: f64 = self.rng.random();
        let x = if self.rng.random_bool(0.3) {
            u * u.sqrt()
        } else {
            u
        };
        ((x * f64::from(self.customers)) as u32).min(self.customers - 1)
    }

    /// Picks a customer for whom `eligible` holds, or gives up after a few draws.
    fn pick_customer_where(
        &mut self,
        eligible: impl Fn(&Traits, &CustomerState) -> bool,
    ) -> Option<Traits> {
        for _ in 0..16 {
            let index = self.pick_customer();
            let traits = self.traits(index);
            if eligible(&traits, &self.state[index as usize]) {
                return Some(traits);
            }
        }
        None
    }

    fn registered(&self, index: u32) -> bool {
        self.state[index as usize].flags & REGISTERED != 0
    }

    /// The person's mobile number: 11 digits, unique per person, never a known test number.
    fn phone(&self, index: u32) -> String {
        phone_number(self.salts.phone % EIGHT_DIGITS, self.customers, index)
    }

    fn member_card(&self, index: u32) -> String {
        let number =
            (u64::from(index).wrapping_mul(CARD_MULTIPLIER) + self.salts.card) % EIGHT_DIGITS;
        format!("M{number:08}")
    }

    fn unionid(&self, index: u32) -> String {
        token("o", self.salts.unionid, index, 27)
    }

    fn openid(&self, app_id: &str, index: u32) -> String {
        let salt = if app_id == MINI_PROGRAM_APP_ID {
            self.salts.mini_program
        } else {
            self.salts.official_account
        };
        token("o", salt, index, 27)
    }

    fn external_userid(&self, index: u32) -> String {
        token("wm", self.salts.external_userid, index, 30)
    }

    fn platform_buyer_id(&self, platform: Platform, index: u32) -> Option<String> {
        match platform {
            Platform::Tmall => Some(token("AAF", self.salts.tmall, index, 21)),
            Platform::Jd => Some(token("jd_", self.salts.jd, index, 24)),
            Platform::Youzan => Some(token("yz", self.salts.youzan, index, 26)),
            _ => None,
        }
    }

    fn device_id(&self, index: u32) -> String {
        format!(
            "dev-{:016x}",
            mix64(self.salts.device.wrapping_add(u64::from(index)))
        )
    }

    fn name(traits: &Traits) -> String {
        let (surname, _) = SURNAMES[(chunk(traits.name_bits, 1) % 16) as usize];
        let given = if traits.female {
            FEMALE_NAMES[(chunk(traits.name_bits, 2) % 10) as usize].0
        } else {
            MALE_NAMES[(chunk(traits.name_bits, 2) % 10) as usize].0
        };
        format!("{surname}{given}")
    }

    fn email(traits: &Traits) -> String {
        let (_, surname) = SURNAMES[(chunk(traits.name_bits, 1) % 16) as usize];
        let given = if traits.female {
            FEMALE_NAMES[(chunk(traits.name_bits, 2) % 10) as usize].1
        } else {
            MALE_NAMES[(chunk(traits.name_bits, 2) % 10) as usize].1
        };
        let domain = EMAIL_DOMAINS[(chunk(traits.name_bits, 3) % 5) as usize];
        format!("{given}.{surname}{}@{domain}", traits.index)
    }

    fn birthday(traits: &Traits) -> String {
        let year = 1960 + (chunk(traits.name_bits, 4) % 48) as i64;
        let day_of_year = (chunk(traits.name_bits, 5) % 365) as i64;
        format_date(days_from_civil(year, 1, 1) + day_of_year)
    }

    fn gender(traits: &Traits) -> String {
        if traits.female { "female" } else { "male" }.to_owned()
    }

    fn guide_id(store: usize, guide: usize) -> String {
        format!("G{:03}{:02}", store + 1, guide + 1)
    }

    /// Replaces a captured phone by junk now and then, as tills and web forms do.
    fn captured_phone(&mut self, index: u32) -> String {
        if self.rng.random_bool(JUNK_CHANCE) {
            JUNK_PHONES[self.rng.random_range(0..JUNK_PHONES.len())].to_owned()
        } else {
            self.phone(index)
        }
    }

    fn captured_card(&mut self, index: u32) -> String {
        if self.rng.random_bool(JUNK_CHANCE) {
            JUNK_MEMBER_CARDS[self.rng.random_range(0..JUNK_MEMBER_CARDS.len())].to_owned()
        } else {
            self.member_card(index)
        }
    }

    // ---- catalog -------------------------------------------------------------------------------

    /// A SKU: the customer's favourite category 40% of the time, popular products more often.
    fn pick_sku(&mut self, favourite_category: usize) -> usize {
        let category = if self.rng.random_bool(0.4) {
            favourite_category
        } else {
            pick_weighted(&mut self.rng, &CATEGORY_WEIGHTS)
        };
        let u: f64 = self.rng.random();
        let within = ((u * u.sqrt() * 20.0) as usize).min(19);
        category * 20 + within
    }

    /// Quantity and discount of a line of `price`.
    fn quantity_and_discount(&mut self, price: i64) -> (i64, i64) {
        let quantity = [1, 2, 3, 4][pick_weighted(&mut self.rng, &[80, 15, 4, 1])];
        let percent = [0, 10, 20, 5][pick_weighted(&mut self.rng, &[70, 18, 8, 4])];
        (quantity, quantity * price * percent / 100)
    }

    fn pos_lines(&mut self, favourite_category: usize) -> Vec<PosLine> {
        let count = 1 + pick_weighted(&mut self.rng, &[45, 28, 15, 8, 4]);
        let mut lines = Vec::with_capacity(count);
        for _ in 0..count {
            let sku = self.pick_sku(favourite_category);
            let price = self.catalog[sku].price;
            let (quantity, discount) = self.quantity_and_discount(price);
            let sku = &self.catalog[sku];
            lines.push(PosLine {
                sku: sku.code.clone(),
                description: Some(sku.title.clone()),
                category: Some(sku.category.to_owned()),
                quantity,
                unit_price_minor: sku.price,
                discount_minor: discount,
            });
        }
        lines
    }

    fn order_items(&mut self, favourite_category: usize) -> Vec<OrderItem> {
        let count = 1 + pick_weighted(&mut self.rng, &[55, 28, 12, 5]);
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            let sku = self.pick_sku(favourite_category);
            let price = self.catalog[sku].price;
            let (quantity, discount) = self.quantity_and_discount(price);
            let sku = &self.catalog[sku];
            items.push(OrderItem {
                sku: sku.code.clone(),
                title: Some(sku.title.clone()),
                category: Some(sku.category.to_owned()),
                quantity,
                unit_price_minor: sku.price,
                discount_minor: discount,
            });
        }
        items
    }

    // ---- POS -----------------------------------------------------------------------------------

    /// The next serial of a till on a local business day, as receipts print it: the date, the
    /// till and a sequence number, so that a serial also names its till and day within a store.
    fn next_serial(&mut self, store: usize, till: usize, day: i64) -> String {
        let counter = &mut self.tills[store * TILLS.len() + till];
        if counter.0 != day {
            *counter = (day, 0);
        }
        counter.1 += 1;
        let sequence = counter.1;
        let (year, month, date) = civil_from_days(day);
        format!("{year:04}{month:02}{date:02}{}{sequence:06}", till + 1)
    }

    /// When a transaction of this till-day reaches the stream: at once, or, for an offline till,
    /// in one batch an hour to two days after closing.
    fn pos_emit_time(&self, store: usize, till: usize, day: i64, t: i64) -> i64 {
        let key = (store * TILLS.len() + till) as u64;
        let h = mix64(self.salts.offline ^ key.wrapping_mul(GOLDEN) ^ ((day as u64) << 8));
        if h % 1000 >= OFFLINE_TILL_DAYS_PER_MILLE {
            return t;
        }
        let closing = day * DAY - SHANGHAI_OFFSET + STORE_CLOSE_HOUR * HOUR;
        let delay = HOUR + ((h >> 20) % (47 * HOUR) as u64) as i64;
        (closing + delay).max(t + HOUR)
    }

    fn pick_till(&mut self) -> usize {
        pick_weighted(&mut self.rng, &[45, 30, 15, 10])
    }

    fn payment_reference(&mut self, kind: TenderKind) -> Option<String> {
        self.counters.payment += 1;
        let n = self.counters.payment;
        match kind {
            TenderKind::WechatPay => Some(format!("4200{:024}", n)),
            TenderKind::Alipay => Some(format!("2026{:024}", n)),
            TenderKind::BankCard => Some(format!("UP{:012}", n)),
            _ => None,
        }
    }

    fn pos_sale(&mut self, t: i64) {
        let index = self.pick_customer();
        let traits = self.traits(index);
        let store = if self.rng.random_bool(0.75) {
            traits.home_store
        } else {
            self.rng.random_range(0..STORE_COUNT)
        };
        let till = self.pick_till();
        let local = t + SHANGHAI_OFFSET;
        let day = local.div_euclid(DAY);
        let serial = self.next_serial(store, till, day);
        let lines = self.pos_lines(traits.favourite_category);
        let total: i64 = lines.iter().map(pos_line_net).sum();

        // Who the till recognised: a member by card and/or phone, a known phone, or nobody.
        let registered = self.registered(index);
        let (mut member_card, mut phone) = (None, None);
        if self.rng.random_bool(0.6) {
            if registered {
                match pick_weighted(&mut self.rng, &[55, 20, 25]) {
                    0 => member_card = Some(self.captured_card(index)),
                    1 => phone = Some(self.captured_phone(index)),
                    _ => {
                        member_card = Some(self.captured_card(index));
                        phone = Some(self.captured_phone(index));
                    }
                }
            } else {
                phone = Some(self.captured_phone(index));
            }
        } else if self.rng.random_bool(0.03) {
            // The cashier typed a placeholder for a guest.
            phone = Some(JUNK_PHONES[self.rng.random_range(0..4)].to_owned());
        }
        let identified = registered && (member_card.is_some() || phone.is_some());

        // Tenders: a coupon now and then, stored value for members who have it, then the rest.
        let mut tenders = Vec::with_capacity(2);
        let mut remaining = total;
        if self.rng.random_bool(0.06) {
            let value = [1_000, 2_000, 3_000, 5_000][self.rng.random_range(0..4)];
            if value < remaining {
                self.counters.coupon += 1;
                tenders.push(Tender {
                    kind: TenderKind::Coupon,
                    amount_minor: value,
                    reference: Some(format!("CPN{:010}", self.counters.coupon)),
                });
                remaining -= value;
            }
        }
        let balance = self.state[index as usize].stored_value;
        let mut stored_value_used = 0;
        if identified && balance > 0 && self.rng.random_bool(0.4) {
            stored_value_used = balance.min(remaining);
            tenders.push(Tender {
                kind: TenderKind::StoredValue,
                amount_minor: stored_value_used,
                reference: None,
            });
            remaining -= stored_value_used;
            self.state[index as usize].stored_value -= stored_value_used;
        }
        let primary = [
            TenderKind::WechatPay,
            TenderKind::Alipay,
            TenderKind::BankCard,
            TenderKind::Cash,
            TenderKind::MemberCard,
        ][pick_weighted(&mut self.rng, &[45, 28, 10, 12, 5])];
        if remaining > 0 {
            let reference = self.payment_reference(primary);
            tenders.push(Tender {
                kind: primary,
                amount_minor: remaining,
                reference,
            });
        }

        let guide_id = if self.rng.random_bool(0.25) {
            let guide = if store == traits.home_store {
                traits.guide
            } else {
                self.rng.random_range(0..4)
            };
            Some(Self::guide_id(store, guide))
        } else {
            None
        };
        let emit_at = self.pos_emit_time(store, till, day, t);
        let earned_points = identified && total >= 100;

        if self.recent_sales.len() < self.recent_capacity || self.rng.random_bool(0.25) {
            let recent = RecentSale {
                customer: index,
                at: t,
                store,
                serial: serial.clone(),
                lines: lines.clone(),
                member_card: member_card.clone(),
                phone: phone.clone(),
                tender: primary,
                earned_points,
            };
            if self.recent_sales.len() < self.recent_capacity {
                self.recent_sales.push(recent);
            } else {
                let slot = self.rng.random_range(0..self.recent_sales.len());
                self.recent_sales[slot] = recent;
            }
        }

        let cashier_id = Some(format!(
            "C{:03}{:02}",
            store + 1,
            self.rng.random_range(1..=6)
        ));
        let transaction = PosTransaction {
            kind: PosTransactionKind::Sale,
            brand: self.config.brand.clone(),
            store_id: self.stores[store].clone(),
            till_id: TILLS[till].to_owned(),
            serial,
            business_day: format_date(day),
            occurred_at_local: format_local_time(local),
            time_zone: None,
            currency: CURRENCY.to_owned(),
            lines,
            tenders,
            total_minor: total,
            member_card,
            phone,
            cashier_id,
            guide_id,
            original_serial: None,
        };
        self.emit(emit_at, EventBody::PosTransaction(transaction));

        // The CRM books what the sale did to the membership once the sale reaches it.
        if stored_value_used > 0 {
            let mut event = self.membership_event(
                MembershipEventType::StoredValueSpent,
                index,
                emit_at + SECOND,
            );
            event.amount_minor = Some(stored_value_used);
            event.currency = Some(CURRENCY.to_owned());
            event.store_id = Some(self.stores[store].clone());
            event.reason = Some("pos purchase".to_owned());
            self.emit(emit_at + SECOND, EventBody::Membership(event));
        }
        if earned_points {
            let points = total / 100;
            self.state[index as usize].points += points;
            let at = emit_at + 2 * SECOND;
            let mut event = self.membership_event(MembershipEventType::PointsAdjusted, index, at);
            event.points_delta = Some(points);
            event.points_expire_at = Some(at + 365 * DAY);
            event.store_id = Some(self.stores[store].clone());
            event.reason = Some("purchase".to_owned());
            self.emit(at, EventBody::Membership(event));
        }
    }

    fn pos_return(&mut self, t: i64) {
        if self.recent_sales.is_empty() {
            return self.pos_sale(t);
        }
        let slot = self.rng.random_range(0..self.recent_sales.len());
        let sale = self.recent_sales.swap_remove(slot);
        if t - sale.at > 30 * DAY || t - sale.at < 10 * MINUTE {
            return self.pos_sale(t);
        }
        // Return some of the sale's lines, some of their units, with their share of discount.
        let mut lines = Vec::with_capacity(sale.lines.len());
        let keep_all = self.rng.random_bool(0.4);
        for line in &sale.lines {
            if !keep_all && !lines.is_empty() && self.rng.random_bool(0.5) {
                continue;
            }
            let quantity = self.rng.random_range(1..=line.quantity);
            lines.push(PosLine {
                discount_minor: line.discount_minor * quantity / line.quantity,
                quantity,
                ..line.clone()
            });
        }
        let total: i64 = lines.iter().map(pos_line_net).sum();
        let store = sale.store;
        let till = self.pick_till();
        let local = t + SHANGHAI_OFFSET;
        let day = local.div_euclid(DAY);
        let serial = self.next_serial(store, till, day);
        let kind = match sale.tender {
            TenderKind::StoredValue | TenderKind::Coupon | TenderKind::MemberCard => {
                TenderKind::Cash
            }
            other => other,
        };
        let reference = self.payment_reference(kind);
        let tenders = vec![Tender {
            kind,
            amount_minor: total,
            reference,
        }];
        let emit_at = self.pos_emit_time(store, till, day, t);
        let transaction = PosTransaction {
            kind: PosTransactionKind::Return,
            brand: self.config.brand.clone(),
            store_id: self.stores[store].clone(),
            till_id: TILLS[till].to_owned(),
            serial,
            business_day: format_date(day),
            occurred_at_local: format_local_time(local),
            time_zone: None,
            currency: CURRENCY.to_owned(),
            lines,
            tenders,
            total_minor: total,
            member_card: sale.member_card,
            phone: sale.phone,
            cashier_id: Some(format!("C{:03}01", store + 1)),
            guide_id: None,
            original_serial: Some(sale.serial),
        };
        self.emit(emit_at, EventBody::PosTransaction(transaction));
        if sale.earned_points {
            let balance = self.state[sale.customer as usize].points;
            let points = (total / 100).min(balance);
            if points > 0 {
                self.state[sale.customer as usize].points -= points;
                let at = emit_at + 2 * SECOND;
                let mut event =
                    self.membership_event(MembershipEventType::PointsAdjusted, sale.customer, at);
                event.points_delta = Some(-points);
                event.store_id = Some(self.stores[store].clone());
                event.reason = Some("return".to_owned());
                self.emit(at, EventBody::Membership(event));
            }
        }
    }

    // ---- e-commerce ----------------------------------------------------------------------------

    fn ecom_order(&mut self, t: i64) {
        let Some(traits) = self.pick_customer_where(|traits, _| {
            traits.wechat || traits.tmall || traits.jd || traits.youzan
        }) else {
            return self.pos_sale(t);
        };
        let weights = [
            if traits.wechat { 40 } else { 0 },
            if traits.tmall { 30 } else { 0 },
            if traits.jd { 20 } else { 0 },
            if traits.youzan { 10 } else { 0 },
        ];
        let platform = [
            Platform::MiniProgram,
            Platform::Tmall,
            Platform::Jd,
            Platform::Youzan,
        ][pick_weighted(&mut self.rng, &weights)];
        let shop_id = match platform {
            Platform::MiniProgram => "mp-mall",
            Platform::Tmall if self.rng.random_bool(0.8) => "tmall-flagship",
            Platform::Tmall => "tmall-outlet",
            Platform::Jd => "jd-flagship",
            _ => "yz-10086",
        };
        self.counters.order += 1;
        let n = self.counters.order;
        let order_id = match platform {
            Platform::MiniProgram => format!("MP{n:012}"),
            Platform::Tmall => (3_900_000_000_000_000_000 + n).to_string(),
            Platform::Jd => (280_000_000_000 + n).to_string(),
            _ => format!("E2026{n:015}"),
        };
        let buyer = self.buyer(platform, &traits);
        let mut items = self.order_items(traits.favourite_category);
        let mut coupons = Vec::new();
        if self.rng.random_bool(0.3) {
            self.counters.coupon += 1;
            let prefix = match platform {
                Platform::Tmall => "TMQ",
                Platform::Jd => "JDQ",
                Platform::Youzan => "YZQ",
                _ => "CPN",
            };
            coupons.push(format!("{prefix}{:010}", self.counters.coupon));
            // The coupon's value lands as discount on the dearest item.
            let value = [1_000, 2_000, 3_000, 5_000][self.rng.random_range(0..4)];
            if let Some(item) = items.iter_mut().max_by_key(|item| order_item_net(item)) {
                item.discount_minor += value.min(order_item_net(item));
            }
        }
        let total: i64 = items.iter().map(order_item_net).sum();
        let mut order = EcomOrder {
            platform,
            brand: self.config.brand.clone(),
            shop_id: shop_id.to_owned(),
            order_id,
            status: OrderStatus::Created,
            source_version: 1,
            occurred_at: t,
            buyer,
            currency: CURRENCY.to_owned(),
            items,
            coupons,
            total_minor: total,
            paid_minor: 0,
        };
        self.emit(t, EventBody::EcomOrder(order.clone()));

        if self.rng.random_bool(0.12) {
            let at = t + self.rng.random_range(5 * MINUTE..24 * HOUR);
            order.status = OrderStatus::Cancelled;
            order.source_version = 2;
            order.occurred_at = at;
            self.emit(at, EventBody::EcomOrder(order));
            return;
        }
        let paid_at = t + self.rng.random_range(30 * SECOND..30 * MINUTE);
        let shipped_at = paid_at + self.rng.random_range(2 * HOUR..36 * HOUR);
        let completed_at = shipped_at + self.rng.random_range(DAY..4 * DAY);
        order.paid_minor = total;
        for (version, (status, at)) in [
            (OrderStatus::Paid, paid_at),
            (OrderStatus::Shipped, shipped_at),
            (OrderStatus::Completed, completed_at),
        ]
        .into_iter()
        .enumerate()
        {
            order.status = status;
            order.source_version = version as i64 + 2;
            order.occurred_at = at;
            self.emit(at, EventBody::EcomOrder(order.clone()));
        }
        if self.rng.random_bool(0.05) {
            self.ecom_refund(order, completed_at);
        }
    }

    fn ecom_refund(&mut self, order: EcomOrder, completed_at: i64) {
        let at = completed_at + self.rng.random_range(HOUR..3 * DAY);
        let full = self.rng.random_bool(0.5);
        let mut items = Vec::with_capacity(order.items.len());
        for item in &order.items {
            if !full && !items.is_empty() && self.rng.random_bool(0.5) {
                continue;
            }
            let quantity = if full {
                item.quantity
            } else {
                self.rng.random_range(1..=item.quantity)
            };
            items.push(OrderItem {
                discount_minor: item.discount_minor * quantity / item.quantity,
                quantity,
                ..item.clone()
            });
        }
        let amount: i64 = items.iter().map(order_item_net).sum();
        self.counters.refund += 1;
        let reason = REFUND_REASONS[self.rng.random_range(0..REFUND_REASONS.len())];
        let refund = EcomRefund {
            platform: order.platform,
            brand: order.brand,
            shop_id: order.shop_id,
            order_id: order.order_id,
            refund_id: format!("RF{:012}", self.counters.refund),
            occurred_at: at,
            buyer: order.buyer,
            currency: order.currency,
            amount_minor: amount,
            items,
            reason: Some(reason.to_owned()),
        };
        self.emit(at, EventBody::EcomRefund(refund));
    }

    /// What the platform tells about the buyer.
    fn buyer(&mut self, platform: Platform, traits: &Traits) -> Buyer {
        let index = traits.index;
        let registered = self.registered(index);
        let mut buyer = Buyer {
            platform_buyer_id: self.platform_buyer_id(platform, index),
            ..Buyer::default()
        };
        let (phone_chance, unionid_chance, card_chance) = match platform {
            Platform::MiniProgram => (0.5, 0.8, 0.7),
            Platform::Youzan => (0.7, 0.4, 0.1),
            _ => (0.1, 0.0, 0.15),
        };
        if platform == Platform::MiniProgram {
            buyer.wechat_app_id = Some(MINI_PROGRAM_APP_ID.to_owned());
            buyer.wechat_openid = Some(self.openid(MINI_PROGRAM_APP_ID, index));
            if self.rng.random_bool(0.06) {
                // Ordered on a store iPad with a guide's help.
                let device = SHARED_DEVICES[traits.home_store % SHARED_DEVICES.len()];
                buyer.device_id = Some(device.to_owned());
            } else if traits.personal_device && self.rng.random_bool(0.6) {
                buyer.device_id = Some(self.device_id(index));
            }
        } else if platform == Platform::Youzan && traits.personal_device {
            buyer.device_id = Some(self.device_id(index));
        }
        if traits.unionid && self.rng.random_bool(unionid_chance) {
            buyer.wechat_unionid = Some(self.unionid(index));
        }
        if self.rng.random_bool(phone_chance) {
            buyer.phone = Some(self.captured_phone(index));
        }
        if registered && self.rng.random_bool(card_chance) {
            buyer.member_card = Some(self.captured_card(index));
        }
        if traits.email && self.rng.random_bool(0.1) {
            buyer.email = Some(Self::email(traits));
        }
        buyer
    }

    // ---- WeChat --------------------------------------------------------------------------------

    fn wechat_event(&self, event_type: WechatEventType, app_id: &str, at: i64) -> WechatEvent {
        WechatEvent {
            event_type,
            app_id: app_id.to_owned(),
            openid: None,
            unionid: None,
            msg_id: None,
            occurred_at: at,
            scene: None,
            phone: None,
            phone_consent: None,
            latitude: None,
            longitude: None,
            coordinate_system: None,
            corp_id: None,
            external_userid: None,
            guide_id: None,
            page: None,
            sku: None,
        }
    }

    fn next_msg_id(&mut self) -> String {
        self.counters.msg += 1;
        (24_000_000_000_000_000 + self.counters.msg).to_string()
    }

    /// Emits a WeChat event. At most one event per activity time goes without a message id (its
    /// natural key then holds the time); follow-ups always carry one.
    fn emit_wechat(&mut self, mut event: WechatEvent, follow_up: bool) {
        if follow_up || self.rng.random_bool(0.35) {
            event.msg_id = Some(self.next_msg_id());
        }
        self.emit(event.occurred_at, EventBody::Wechat(event));
    }

    fn view(&mut self, index: u32, favourite_category: usize, at: i64) -> WechatEvent {
        let mut event = self.wechat_event(WechatEventType::View, MINI_PROGRAM_APP_ID, at);
        event.openid = Some(self.openid(MINI_PROGRAM_APP_ID, index));
        let page = PAGES[pick_weighted(&mut self.rng, &[20, 15, 45, 10, 6, 4])];
        if page == "pages/product/detail" {
            let sku = self.pick_sku(favourite_category);
            event.sku = Some(self.catalog[sku].code.clone());
        }
        event.page = Some(page.to_owned());
        event
    }

    fn wechat(&mut self, t: i64) {
        let Some(traits) = self.pick_customer_where(|traits, _| traits.wechat) else {
            return self.pos_sale(t);
        };
        let index = traits.index;
        let flags = self.state[index as usize].flags;
        match pick_weighted(&mut self.rng, &[14, 20, 5, 8, 8, 45]) {
            0 if flags & FOLLOWING == 0 => {
                let mut event =
                    self.wechat_event(WechatEventType::Follow, OFFICIAL_ACCOUNT_APP_ID, t);
                event.openid = Some(self.openid(OFFICIAL_ACCOUNT_APP_ID, index));
                if traits.unionid && self.rng.random_bool(0.5) {
                    event.unionid = Some(self.unionid(index));
                }
                event.scene = match pick_weighted(&mut self.rng, &[50, 35, 15]) {
                    0 => Some(format!("store:{}", self.stores[traits.home_store])),
                    1 => Some(CAMPAIGN_SCENES[self.rng.random_range(0..4)].to_owned()),
                    _ => None,
                };
                self.state[index as usize].flags |= FOLLOWING;
                self.emit_wechat(event, false);
            }
            0 if self.rng.random_bool(0.3) => {
                let mut event =
                    self.wechat_event(WechatEventType::Unfollow, OFFICIAL_ACCOUNT_APP_ID, t);
                event.openid = Some(self.openid(OFFICIAL_ACCOUNT_APP_ID, index));
                self.state[index as usize].flags &= !FOLLOWING;
                self.emit_wechat(event, false);
            }
            0 | 3 => {
                // Location: reported by the official account to followers, else by the mini
                // program; near the customer's home store.
                let app_id = if flags & FOLLOWING != 0 {
                    OFFICIAL_ACCOUNT_APP_ID
                } else {
                    MINI_PROGRAM_APP_ID
                };
                let mut event = self.wechat_event(WechatEventType::Location, app_id, t);
                event.openid = Some(self.openid(app_id, index));
                let (store_lat, store_lon) = store_location(traits.home_store);
                let mut lat = store_lat + self.rng.random_range(-0.03..0.03);
                let mut lon = store_lon + self.rng.random_range(-0.035..0.035);
                let system = if self.rng.random_bool(0.7) {
                    // GCJ-02 is shifted from GPS by a few hundred metres around Shanghai.
                    lat -= 0.0021;
                    lon += 0.0045;
                    CoordinateSystem::Gcj02
                } else {
                    CoordinateSystem::Wgs84
                };
                event.latitude = Some(round6(lat));
                event.longitude = Some(round6(lon));
                event.coordinate_system = Some(system);
                self.emit_wechat(event, false);
            }
            1 => {
                // A mini-program session: login, then a few views.
                let mut event =
                    self.wechat_event(WechatEventType::MiniProgramLogin, MINI_PROGRAM_APP_ID, t);
                event.openid = Some(self.openid(MINI_PROGRAM_APP_ID, index));
                if traits.unionid {
                    event.unionid = Some(self.unionid(index));
                }
                self.emit_wechat(event, false);
                let mut at = t;
                for _ in 0..self.rng.random_range(0..=4) {
                    at += self.rng.random_range(5 * SECOND..90 * SECOND);
                    let view = self.view(index, traits.favourite_category, at);
                    self.emit_wechat(view, true);
                }
            }
            2 => {
                let mut event =
                    self.wechat_event(WechatEventType::PhoneBound, MINI_PROGRAM_APP_ID, t);
                event.openid = Some(self.openid(MINI_PROGRAM_APP_ID, index));
                if traits.unionid {
                    event.unionid = Some(self.unionid(index));
                }
                // WeChat hands over the number it verified: never junk, and the event is
                // rejected without one.
                event.phone = Some(self.phone(index));
                event.phone_consent = Some(self.rng.random_bool(0.85));
                self.emit_wechat(event, false);
            }
            4 => {
                let added = flags & WECOM_CONTACT != 0;
                if added && !self.rng.random_bool(0.2) {
                    let view = self.view(index, traits.favourite_category, t);
                    return self.emit_wechat(view, false);
                }
                let event_type = if added {
                    WechatEventType::WecomContactRemoved
                } else {
                    WechatEventType::WecomContactAdded
                };
                let mut event = self.wechat_event(event_type, WECOM_CORP_ID, t);
                event.corp_id = Some(WECOM_CORP_ID.to_owned());
                event.external_userid = Some(self.external_userid(index));
                event.guide_id = Some(Self::guide_id(traits.home_store, traits.guide));
                if traits.unionid && self.rng.random_bool(0.6) {
                    event.unionid = Some(self.unionid(index));
                }
                self.state[index as usize].flags ^= WECOM_CONTACT;
                self.emit_wechat(event, false);
            }
            _ => {
                let view = self.view(index, traits.favourite_category, t);
                self.emit_wechat(view, false);
            }
        }
    }

    // ---- membership ----------------------------------------------------------------------------

    fn membership_event(
        &mut self,
        event_type: MembershipEventType,
        index: u32,
        at: i64,
    ) -> MembershipEvent {
        self.counters.event_ref += 1;
        MembershipEvent {
            event_type,
            brand: self.config.brand.clone(),
            member_card: self.member_card(index),
            event_ref: format!("CRM{:012}", self.counters.event_ref),
            occurred_at: at,
            phone: None,
            email: None,
            name: None,
            gender: None,
            birthday: None,
            home_store: None,
            consent_purpose: None,
            consent_channel: None,
            points_delta: None,
            points_expire_at: None,
            coupon_id: None,
            coupon_campaign: None,
            coupon_expires_at: None,
            amount_minor: None,
            currency: None,
            tier: None,
            reason: None,
            store_id: None,
        }
    }

    fn membership(&mut self, t: i64) {
        let Some(traits) = self.pick_customer_where(|traits, _| traits.has_card) else {
            return self.wechat(t);
        };
        let index = traits.index;
        if !self.registered(index) {
            return self.register(&traits, t);
        }
        match pick_weighted(&mut self.rng, &[20, 12, 25, 8, 15, 6, 6, 3]) {
            0 => self.consent_change(index, t),
            1 => self.top_up(index, traits.home_store, t),
            2 => self.issue_coupon(index, t, None),
            3 => self.redeem_points(index, t),
            4 => self.profile_update(&traits, t),
            5 => self.spend_stored_value_online(index, traits.home_store, t),
            6 => {
                let delta = self.rng.random_range(1..=50) * 10;
                let mut event =
                    self.membership_event(MembershipEventType::PointsAdjusted, index, t);
                event.points_delta = Some(delta);
                event.points_expire_at = Some(t + 365 * DAY);
                event.reason = Some("customer service goodwill".to_owned());
                self.state[index as usize].points += delta;
                self.emit(t, EventBody::Membership(event));
            }
            _ => {
                let mut event = self.membership_event(MembershipEventType::TierChanged, index, t);
                event.tier = Some(TIERS[self.rng.random_range(0..TIERS.len())].to_owned());
                event.reason = Some("manual adjustment".to_owned());
                self.emit(t, EventBody::Membership(event));
            }
        }
    }

    /// A member joins: the registration, the consents given on the form, a welcome coupon.
    fn register(&mut self, traits: &Traits, t: i64) {
        let index = traits.index;
        let in_store = self.rng.random_bool(0.6);
        let store = traits.home_store;
        let mut event = self.membership_event(MembershipEventType::Registered, index, t);
        event.phone = Some(self.captured_phone(index));
        if traits.email {
            event.email = Some(Self::email(traits));
        }
        event.name = Some(Self::name(traits));
        event.gender = Some(Self::gender(traits));
        event.birthday = Some(Self::birthday(traits));
        event.home_store = Some(self.stores[store].clone());
        if in_store {
            event.store_id = Some(self.stores[store].clone());
        }
        self.emit(t, EventBody::Membership(event));
        self.state[index as usize].flags |= REGISTERED;
        let channel = if in_store { "pos" } else { "mini_program" };
        let mut at = t;
        for (purpose_index, purpose) in CONSENT_PURPOSES.iter().enumerate() {
            if self.rng.random_bool(0.6) {
                at += SECOND;
                let mut event =
                    self.membership_event(MembershipEventType::ConsentGranted, index, at);
                event.consent_purpose = Some((*purpose).to_owned());
                event.consent_channel = Some(channel.to_owned());
                self.state[index as usize].flags |= 1 << (CONSENT_SHIFT + purpose_index as u8);
                self.emit(at, EventBody::Membership(event));
            }
        }
        self.issue_coupon(index, at + SECOND, Some("welcome"));
    }

    fn consent_change(&mut self, index: u32, t: i64) {
        let purpose_index = self.rng.random_range(0..CONSENT_PURPOSES.len());
        let bit = 1 << (CONSENT_SHIFT + purpose_index as u8);
        let granted = self.state[index as usize].flags & bit != 0;
        let event_type = if granted {
            MembershipEventType::ConsentWithdrawn
        } else {
            MembershipEventType::ConsentGranted
        };
        let channel = ["mini_program", "pos", "sms", "wechat"][self.rng.random_range(0..4)];
        let mut event = self.membership_event(event_type, index, t);
        event.consent_purpose = Some(CONSENT_PURPOSES[purpose_index].to_owned());
        event.consent_channel = Some(channel.to_owned());
        self.state[index as usize].flags ^= bit;
        self.emit(t, EventBody::Membership(event));
    }

    fn top_up(&mut self, index: u32, store: usize, t: i64) {
        let amount =
            [10_000, 20_000, 50_000, 100_000][pick_weighted(&mut self.rng, &[40, 30, 20, 10])];
        let mut event = self.membership_event(MembershipEventType::StoredValueToppedUp, index, t);
        event.amount_minor = Some(amount);
        event.currency = Some(CURRENCY.to_owned());
        if self.rng.random_bool(0.7) {
            event.store_id = Some(self.stores[store].clone());
        }
        self.state[index as usize].stored_value += amount;
        self.emit(t, EventBody::Membership(event));
    }

    fn spend_stored_value_online(&mut self, index: u32, store: usize, t: i64) {
        let balance = self.state[index as usize].stored_value;
        if balance < 1_000 {
            return self.top_up(index, store, t);
        }
        let amount = self.rng.random_range(500..=balance);
        let mut event = self.membership_event(MembershipEventType::StoredValueSpent, index, t);
        event.amount_minor = Some(amount);
        event.currency = Some(CURRENCY.to_owned());
        event.reason = Some("mini program order".to_owned());
        self.state[index as usize].stored_value -= amount;
        self.emit(t, EventBody::Membership(event));
    }

    fn redeem_points(&mut self, index: u32, t: i64) {
        let balance = self.state[index as usize].points;
        if balance < 500 {
            return self.issue_coupon(index, t, None);
        }
        let points = self.rng.random_range(1..=(balance / 100).min(50)) * 100;
        let mut event = self.membership_event(MembershipEventType::PointsAdjusted, index, t);
        event.points_delta = Some(-points);
        event.reason = Some("redemption".to_owned());
        self.state[index as usize].points -= points;
        self.emit(t, EventBody::Membership(event));
    }

    /// Issues a coupon and schedules its fate: redeemed before it expires, or expired.
    fn issue_coupon(&mut self, index: u32, t: i64, campaign: Option<&'static str>) {
        let campaign = campaign
            .unwrap_or_else(|| COUPON_CAMPAIGNS[self.rng.random_range(0..COUPON_CAMPAIGNS.len())]);
        self.counters.coupon += 1;
        let coupon_id = format!("CPN{:010}", self.counters.coupon);
        let expires_at = t + 30 * DAY;
        let mut event = self.membership_event(MembershipEventType::CouponIssued, index, t);
        event.coupon_id = Some(coupon_id.clone());
        event.coupon_campaign = Some(campaign.to_owned());
        event.coupon_expires_at = Some(expires_at);
        self.emit(t, EventBody::Membership(event));

        let (event_type, at) = if self.rng.random_bool(0.45) {
            let at = t + self.rng.random_range(HOUR..29 * DAY);
            (MembershipEventType::CouponRedeemed, at)
        } else {
            (MembershipEventType::CouponExpired, expires_at)
        };
        let mut event = self.membership_event(event_type, index, at);
        if event_type == MembershipEventType::CouponRedeemed && self.rng.random_bool(0.7) {
            event.store_id = Some(self.stores[self.rng.random_range(0..STORE_COUNT)].clone());
        }
        event.coupon_id = Some(coupon_id);
        event.coupon_campaign = Some(campaign.to_owned());
        event.coupon_expires_at = Some(expires_at);
        self.emit(at, EventBody::Membership(event));
    }

    fn profile_update(&mut self, traits: &Traits, t: i64) {
        let index = traits.index;
        let mut event = self.membership_event(MembershipEventType::ProfileUpdated, index, t);
        if self.rng.random_bool(0.3) {
            event.name = Some(Self::name(traits));
        }
        if self.rng.random_bool(0.1) {
            event.gender = Some(Self::gender(traits));
        }
        if self.rng.random_bool(0.2) {
            event.birthday = Some(Self::birthday(traits));
        }
        if self.rng.random_bool(0.2) {
            event.home_store = Some(self.stores[self.rng.random_range(0..STORE_COUNT)].clone());
        }
        if self.rng.random_bool(0.2) {
            event.phone = Some(self.captured_phone(index));
        }
        if traits.email && (self.rng.random_bool(0.4) || event.name.is_none()) {
            event.email = Some(Self::email(traits));
        } else if event.name.is_none() && event.home_store.is_none() {
            event.name = Some(Self::name(traits));
        }
        self.emit(t, EventBody::Membership(event));
    }
}

impl Iterator for Generator {
    type Item = EventBody;

    fn next(&mut self) -> Option<EventBody> {
        Some(self.next_event())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

// ---- helpers -------------------------------------------------------------------------------

/// The mobile number of person `index` of `customers`: a prefix by index, and an 8-digit suffix
/// from a bijection of the index, so numbers are unique; a known test number moves to a slot
/// beyond every person's, one chain of slots per test number.
fn phone_number(offset: u64, customers: u32, index: u32) -> String {
    let prefixes = PHONE_PREFIXES.len() as u64;
    let prefix = PHONE_PREFIXES[(u64::from(index) % prefixes) as usize];
    let spare_base = u64::from(customers).div_ceil(prefixes);
    let mut slot = u64::from(index) / prefixes;
    loop {
        let suffix = (slot.wrapping_mul(PHONE_MULTIPLIER) + offset) % EIGHT_DIGITS;
        let national = prefix * EIGHT_DIGITS + suffix;
        match TEST_NATIONAL_NUMBERS.iter().position(|&n| n == national) {
            None => return national.to_string(),
            Some(which) if slot < spare_base => slot = spare_base + which as u64,
            Some(_) => slot += TEST_NATIONAL_NUMBERS.len() as u64,
        }
    }
}

/// The splitmix64 finaliser: a bijection of u64 that scrambles well.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `n`th 10-bit chunk of `bits` (0..=5).
fn chunk(bits: u64, n: u32) -> u64 {
    (bits >> (10 * n)) & 1023
}

/// Whether a 10-bit chunk falls under `percent`.
fn chance(chunk: u64, percent: u64) -> bool {
    chunk * 100 < percent * 1024
}

/// `prefix` and `len` characters of an id unique per (salt, index): the first 11 characters
/// encode a bijection of the index, the rest pad it.
fn token(prefix: &str, salt: u64, index: u32, len: usize) -> String {
    let mut out = String::with_capacity(prefix.len() + len);
    out.push_str(prefix);
    let first = mix64(salt.wrapping_add(u64::from(index)));
    let (mut bits, mut left, mut round) = (first, 64u32, 0u64);
    for _ in 0..len {
        if left == 0 {
            round += 1;
            bits = mix64(first ^ round.wrapping_mul(GOLDEN));
            left = 64;
        }
        out.push(char::from(TOKEN_ALPHABET[(bits & 63) as usize]));
        bits >>= 6;
        left = left.saturating_sub(6);
    }
    out
}

fn pick_weighted(rng: &mut StdRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total.max(1));
    for (index, &weight) in weights.iter().enumerate() {
        if x < weight {
            return index;
        }
        x -= weight;
    }
    weights.len() - 1
}

fn pos_line_net(line: &PosLine) -> i64 {
    line.quantity * line.unit_price_minor - line.discount_minor
}

fn order_item_net(item: &OrderItem) -> i64 {
    item.quantity * item.unit_price_minor - item.discount_minor
}

/// A store's location (WGS-84), spread over Shanghai.
fn store_location(store: usize) -> (f64, f64) {
    let row = (store % 5) as f64;
    let column = (store / 5) as f64;
    (31.08 + row * 0.06, 121.30 + column * 0.08)
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day number since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` of a day number.
fn format_date(days: i64) -> String {
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `YYYY-MM-DDTHH:MM:SS` of local microseconds, without an offset.
fn format_local_time(local: TimestampMicros) -> String {
    let (year, month, day) = civil_from_days(local.div_euclid(DAY));
    let seconds = local.rem_euclid(DAY) / SECOND;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinfold_core::event::EventFamily;
    use kinfold_core::{Identifier, IdentifierKind};
    use std::collections::{BTreeMap, BTreeSet};

    fn events(n: usize) -> Vec<EventBody> {
        Generator::new(GeneratorConfig::default()).take_events(n)
    }

    /// `YYYY-MM-DDTHH:MM:SS` local Shanghai time as UTC microseconds.
    fn parse_local(text: &str) -> i64 {
        let number = |range: std::ops::Range<usize>| -> i64 {
            text[range]
                .parse()
                .unwrap_or_else(|_| panic!("bad time `{text}`"))
        };
        let days = days_from_civil(number(0..4), number(5..7), number(8..10));
        let seconds = number(11..13) * 3600 + number(14..16) * 60 + number(17..19);
        days * DAY + seconds * SECOND - SHANGHAI_OFFSET
    }

    fn event_time(event: &EventBody) -> i64 {
        match event {
            EventBody::PosTransaction(t) => parse_local(&t.occurred_at_local),
            EventBody::EcomOrder(o) => o.occurred_at,
            EventBody::EcomRefund(r) => r.occurred_at,
            EventBody::Wechat(w) => w.occurred_at,
            EventBody::Membership(m) => m.occurred_at,
        }
    }

    fn phones(event: &EventBody) -> Vec<&str> {
        let phone = match event {
            EventBody::PosTransaction(t) => t.phone.as_deref(),
            EventBody::EcomOrder(o) => o.buyer.phone.as_deref(),
            EventBody::EcomRefund(r) => r.buyer.phone.as_deref(),
            EventBody::Wechat(w) => w.phone.as_deref(),
            EventBody::Membership(m) => m.phone.as_deref(),
        };
        phone.into_iter().collect()
    }

    fn cards(event: &EventBody) -> Vec<&str> {
        let card = match event {
            EventBody::PosTransaction(t) => t.member_card.as_deref(),
            EventBody::EcomOrder(o) => o.buyer.member_card.as_deref(),
            EventBody::EcomRefund(r) => r.buyer.member_card.as_deref(),
            EventBody::Wechat(_) => None,
            EventBody::Membership(m) => Some(m.member_card.as_str()),
        };
        card.into_iter().collect()
    }

    fn has_junk(event: &EventBody) -> bool {
        phones(event).iter().any(|p| JUNK_PHONES.contains(p))
            || cards(event).iter().any(|c| JUNK_MEMBER_CARDS.contains(c))
    }

    #[test]
    fn same_seed_same_sequence() {
        assert_eq!(events(2000), events(2000));
        let other = Generator::new(GeneratorConfig {
            seed: 8,
            ..GeneratorConfig::default()
        })
        .take_events(2000);
        assert_ne!(events(2000), other);
    }

    #[test]
    fn the_iterator_and_next_event_agree() {
        let mut generator = Generator::new(GeneratorConfig::default());
        let from_iterator: Vec<EventBody> = Iterator::take(generator.by_ref(), 500).collect();
        assert_eq!(from_iterator, events(500));
        assert_eq!(Some(generator.next_event()), events(501).pop());
    }

    #[test]
    fn every_family_appears_early() {
        let seen: BTreeSet<&str> = events(5000)
            .iter()
            .map(|event| event.family().as_str())
            .collect();
        for family in EventFamily::ALL {
            assert!(seen.contains(family.as_str()), "{family} missing");
        }
    }

    #[test]
    fn pos_totals_are_the_sum_of_lines_and_tenders() {
        let mut sales = 0;
        for event in events(20_000) {
            let EventBody::PosTransaction(t) = event else {
                continue;
            };
            let lines: i64 = t.lines.iter().map(pos_line_net).sum();
            let tenders: i64 = t.tenders.iter().map(|tender| tender.amount_minor).sum();
            assert_eq!(t.total_minor, lines, "{t:?}");
            assert_eq!(t.total_minor, tenders, "{t:?}");
            assert!((1..=5).contains(&t.lines.len()));
            assert!(t.tenders.iter().all(|tender| tender.amount_minor > 0));
            sales += usize::from(t.kind == PosTransactionKind::Sale);
        }
        assert!(sales > 3000, "{sales} sales");
    }

    #[test]
    fn returns_refer_to_earlier_bigger_sales() {
        let all = events(20_000);
        // Serials encode date and till, so store and serial name one sale.
        let mut sales: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
        for event in &all {
            if let EventBody::PosTransaction(t) = event
                && t.kind == PosTransactionKind::Sale
            {
                let key = (t.store_id.as_str(), t.serial.as_str());
                let sale = (parse_local(&t.occurred_at_local), t.total_minor);
                assert!(sales.insert(key, sale).is_none(), "{key:?} twice");
                assert_eq!(t.serial.len(), 15);
                assert_eq!(t.serial[..8], t.business_day.replace('-', ""));
                assert_eq!(t.serial[8..9], t.till_id[1..]);
            }
        }
        let (mut returns, mut unmatched) = (0, 0);
        for event in &all {
            let EventBody::PosTransaction(t) = event else {
                continue;
            };
            if t.kind != PosTransactionKind::Return {
                continue;
            }
            returns += 1;
            let at = parse_local(&t.occurred_at_local);
            let original = t
                .original_serial
                .as_deref()
                .expect("return without original");
            // The sale may be in an offline till's batch that is not uploaded yet.
            let Some(&(sold_at, total)) = sales.get(&(t.store_id.as_str(), original)) else {
                unmatched += 1;
                continue;
            };
            assert!(sold_at < at && total >= t.total_minor, "{t:?}");
        }
        assert!(returns > 50, "{returns} returns");
        assert!(
            unmatched * 10 < returns,
            "{unmatched} of {returns} unmatched"
        );
    }

    #[test]
    fn order_versions_increase_through_the_lifecycle() {
        let mut orders: BTreeMap<(String, String), Vec<(OrderStatus, i64)>> = BTreeMap::new();
        let mut refunded = 0;
        for event in events(20_000) {
            match event {
                EventBody::EcomOrder(o) => {
                    assert_eq!(
                        o.total_minor,
                        o.items.iter().map(order_item_net).sum::<i64>()
                    );
                    orders
                        .entry((o.shop_id, o.order_id))
                        .or_default()
                        .push((o.status, o.source_version));
                }
                EventBody::EcomRefund(r) => {
                    assert!(r.amount_minor >= 0);
                    refunded += 1;
                }
                _ => {}
            }
        }
        let (mut completed, mut cancelled) = (0, 0);
        for steps in orders.values() {
            assert!(steps.windows(2).all(|w| w[0].1 < w[1].1), "{steps:?}");
            let statuses: Vec<OrderStatus> = steps.iter().map(|s| s.0).collect();
            use OrderStatus::*;
            let full = [Created, Paid, Shipped, Completed];
            assert!(
                full.starts_with(&statuses) || statuses == [Created, Cancelled],
                "{statuses:?}"
            );
            for (status, version) in steps {
                let expected = match status {
                    Created => 1,
                    Paid | Cancelled => 2,
                    Shipped => 3,
                    Completed => 4,
                };
                assert_eq!(*version, expected);
            }
            completed += usize::from(statuses.last() == Some(&Completed));
            cancelled += usize::from(statuses.last() == Some(&Cancelled));
        }
        assert!(completed > 300 && cancelled > 30, "{completed} {cancelled}");
        assert!(refunded > 5, "{refunded} refunds");
    }

    #[test]
    fn event_ids_are_unique() {
        let all = events(20_000);
        let ids: BTreeSet<_> = all.iter().map(EventBody::event_id).collect();
        assert_eq!(ids.len(), all.len());
    }

    #[test]
    fn phones_parse_unless_junk() {
        let mut checked = 0;
        for event in events(20_000) {
            for phone in phones(&event) {
                checked += 1;
                if JUNK_PHONES.contains(&phone) {
                    continue;
                }
                let parsed = Identifier::parse(IdentifierKind::Phone, "86", phone);
                assert!(parsed.is_ok(), "{phone}: {parsed:?}");
                assert_eq!(phone.len(), 11);
                assert!(["13", "15", "18"].contains(&&phone[..2]), "{phone}");
            }
        }
        assert!(checked > 3000, "{checked} phones");
    }

    #[test]
    fn the_population_has_unique_stable_identifiers() {
        let generator = Generator::new(GeneratorConfig {
            customers: 100_000,
            ..GeneratorConfig::default()
        });
        let mut phones = BTreeSet::new();
        let mut cards = BTreeSet::new();
        let mut openids = BTreeSet::new();
        for index in 0..100_000 {
            let phone = generator.phone(index);
            assert!(
                Identifier::parse(IdentifierKind::Phone, "86", &phone).is_ok(),
                "{phone}"
            );
            assert!(phones.insert(phone));
            let card = generator.member_card(index);
            assert_eq!(card.len(), 9);
            assert!(cards.insert(card));
            let official = generator.openid(OFFICIAL_ACCOUNT_APP_ID, index);
            let mini = generator.openid(MINI_PROGRAM_APP_ID, index);
            assert_ne!(official, mini);
            assert_eq!(official.len(), 28);
            assert!(openids.insert(official) && openids.insert(mini));
        }
        assert_eq!(generator.phone(42), generator.phone(42));
    }

    #[test]
    fn test_numbers_are_never_given_to_a_person() {
        // The inverse of the suffix bijection, to find the person who would get a test number.
        let inverse = (1..EIGHT_DIGITS)
            .step_by(2)
            .find(|&x| x * PHONE_MULTIPLIER % EIGHT_DIGITS == 1)
            .expect("multiplier is invertible");
        let offset = 12_345_678;
        let prefixes = PHONE_PREFIXES.len() as u64;
        for test in TEST_NATIONAL_NUMBERS {
            let position = PHONE_PREFIXES
                .iter()
                .position(|&p| p == test / EIGHT_DIGITS)
                .expect("test prefix in use") as u64;
            let suffix = test % EIGHT_DIGITS;
            let slot = (suffix + EIGHT_DIGITS - offset) % EIGHT_DIGITS * inverse % EIGHT_DIGITS;
            let index = u32::try_from(slot * prefixes + position).expect("index fits");
            let customers = index + 1;
            let phone = phone_number(offset, customers, index);
            assert_ne!(phone, test.to_string());
            assert!(Identifier::parse(IdentifierKind::Phone, "86", &phone).is_ok());
            // Nobody else in the population has the replacement number.
            let spare_base = u64::from(customers).div_ceil(prefixes);
            let suffix = phone[3..].parse::<u64>().expect("digits");
            let replacement_slot =
                (suffix + EIGHT_DIGITS - offset) % EIGHT_DIGITS * inverse % EIGHT_DIGITS;
            assert!(replacement_slot >= spare_base);
        }
    }

    #[test]
    fn events_are_valid() {
        let config = GeneratorConfig::default();
        let end = config.start_micros + i64::from(config.days) * DAY;
        let required = |s: &str| !s.is_empty() && s.len() <= 100;
        for event in events(20_000) {
            let at = event_time(&event);
            assert!(at >= config.start_micros && at < end, "{event:?}");
            match &event {
                EventBody::PosTransaction(t) => {
                    assert_eq!(t.currency, CURRENCY);
                    assert_eq!(t.brand, config.brand);
                    assert_eq!(t.time_zone, None);
                    assert_eq!(t.occurred_at_local.len(), 19);
                    assert_eq!(&t.occurred_at_local[..10], t.business_day);
                    for s in [
                        &t.brand,
                        &t.store_id,
                        &t.till_id,
                        &t.serial,
                        &t.business_day,
                    ] {
                        assert!(required(s));
                    }
                    assert!(t.total_minor >= 0);
                    for line in &t.lines {
                        assert!(line.quantity >= 1 && line.discount_minor >= 0);
                        assert!((500..=50_000).contains(&line.unit_price_minor));
                        assert!(pos_line_net(line) >= 0 && required(&line.sku));
                    }
                    let hour = (at + SHANGHAI_OFFSET).rem_euclid(DAY) / HOUR;
                    assert!((STORE_OPEN_HOUR..STORE_CLOSE_HOUR).contains(&hour));
                }
                EventBody::EcomOrder(o) => {
                    assert_eq!(o.currency, CURRENCY);
                    assert!(o.total_minor >= 0 && o.paid_minor >= 0);
                    assert!(required(&o.order_id) && required(&o.shop_id));
                    assert!(
                        o.items
                            .iter()
                            .all(|i| i.quantity >= 1 && order_item_net(i) >= 0)
                    );
                    if o.platform == Platform::MiniProgram {
                        assert_eq!(o.buyer.wechat_app_id.as_deref(), Some(MINI_PROGRAM_APP_ID));
                        assert!(o.buyer.wechat_openid.is_some());
                    } else {
                        assert!(o.buyer.platform_buyer_id.is_some());
                    }
                }
                EventBody::EcomRefund(r) => {
                    assert_eq!(r.currency, CURRENCY);
                    assert!(r.amount_minor >= 0 && required(&r.refund_id));
                }
                EventBody::Wechat(w) => {
                    assert!(required(&w.app_id));
                    assert!(w.openid.is_some() || w.external_userid.is_some());
                    if let (Some(lat), Some(lon)) = (w.latitude, w.longitude) {
                        assert!((30.9..31.5).contains(&lat) && (121.2..121.8).contains(&lon));
                    }
                }
                EventBody::Membership(m) => {
                    assert!(required(&m.member_card) && required(&m.event_ref));
                    assert!(m.member_card.starts_with('M'));
                    if let Some(amount) = m.amount_minor {
                        assert!(amount >= 0);
                        assert_eq!(m.currency.as_deref(), Some(CURRENCY));
                    }
                    if let Some(birthday) = &m.birthday {
                        assert_eq!(birthday.len(), 10);
                    }
                    if m.points_delta.is_some_and(|delta| delta > 0)
                        && m.event_type == MembershipEventType::PointsAdjusted
                    {
                        assert_eq!(m.points_expire_at.map(|e| e - at), Some(365 * DAY));
                    }
                }
            }
        }
    }

    #[test]
    fn the_mix_looks_like_a_retailer() {
        let all = events(20_000);
        let count = |family: EventFamily| all.iter().filter(|e| e.family() == family).count();
        let pos = count(EventFamily::PosTransaction);
        for family in [
            EventFamily::EcomOrder,
            EventFamily::Wechat,
            EventFamily::Membership,
        ] {
            assert!(
                pos > count(family),
                "pos {pos} vs {family} {}",
                count(family)
            );
        }
        let junk = all.iter().filter(|e| has_junk(e)).count();
        let share = junk as f64 / all.len() as f64;
        assert!((0.01..0.035).contains(&share), "junk share {share}");

        let wechat: Vec<&WechatEvent> = all
            .iter()
            .filter_map(|e| match e {
                EventBody::Wechat(w) => Some(w),
                _ => None,
            })
            .collect();
        let with_msg_id = wechat.iter().filter(|w| w.msg_id.is_some()).count();
        let share = with_msg_id as f64 / wechat.len() as f64;
        assert!((0.4..0.6).contains(&share), "msg id share {share}");

        // Sales: about 60% identify the customer.
        let sales: Vec<&PosTransaction> = all
            .iter()
            .filter_map(|e| match e {
                EventBody::PosTransaction(t) if t.kind == PosTransactionKind::Sale => Some(t),
                _ => None,
            })
            .collect();
        let identified = sales
            .iter()
            .filter(|t| {
                t.member_card
                    .as_deref()
                    .is_some_and(|c| !JUNK_MEMBER_CARDS.contains(&c))
                    || t.phone
                        .as_deref()
                        .is_some_and(|p| !JUNK_PHONES.contains(&p))
            })
            .count();
        let share = identified as f64 / sales.len() as f64;
        assert!((0.5..0.65).contains(&share), "identified share {share}");
    }

    #[test]
    fn some_pos_uploads_arrive_late() {
        let mut latest = GeneratorConfig::default().start_micros;
        let (mut pos, mut late) = (0usize, 0usize);
        for event in events(20_000) {
            let at = event_time(&event);
            if let EventBody::PosTransaction(_) = event {
                pos += 1;
                if at < latest - HOUR / 2 {
                    late += 1;
                    assert!(latest - at <= 3 * DAY);
                }
            }
            latest = latest.max(at);
        }
        let share = late as f64 / pos as f64;
        assert!((0.01..0.06).contains(&share), "late share {share}");
    }

    #[test]
    fn store_ipads_are_shared() {
        let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for event in events(20_000) {
            if let EventBody::EcomOrder(o) = event
                && let (Some(device), Some(openid)) = (o.buyer.device_id, o.buyer.wechat_openid)
            {
                users.entry(device).or_default().insert(openid);
            }
        }
        let shared = SHARED_DEVICES
            .iter()
            .filter(|device| users.get(**device).is_some_and(|u| u.len() >= 3))
            .count();
        assert!(shared >= 3, "{shared} shared devices");
        assert!(users.keys().any(|device| device.starts_with("dev-")));
    }

    #[test]
    fn the_stream_carries_on_past_the_window() {
        let mut generator = Generator::new(GeneratorConfig {
            customers: 20,
            days: 2,
            ..GeneratorConfig::default()
        });
        let all = generator.take_events(5_000);
        let ids: BTreeSet<_> = all.iter().map(EventBody::event_id).collect();
        assert_eq!(ids.len(), all.len());
        let last = all.iter().map(event_time).max().unwrap_or_default();
        assert!(last > generator.config.start_micros + 2 * DAY);
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 1, 1), 20_454);
        assert_eq!(format_date(days_from_civil(2024, 2, 29)), "2024-02-29");
        assert_eq!(
            format_local_time(DAY + 3 * HOUR + 4 * MINUTE + 5 * SECOND),
            "1970-01-02T03:04:05"
        );
        assert_eq!(
            GeneratorConfig::default().start_micros,
            1_767_225_600_000_000
        );
        for day in -800..80_000 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
