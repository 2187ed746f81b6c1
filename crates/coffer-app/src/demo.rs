//! Demo data for a local run: vendors and products to click through, and the
//! `demo-credentials.json` that tells a person (or a script) what exists.

use crate::error::AppError;
use coffer_domain::{Clock, Currency, Delivery, Money, NewProduct, NewVendor, Prices};
use coffer_store::Db;
use coffer_store::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

struct DemoProduct {
    name: &'static str,
    description: &'static str,
    usd: i64,
    eur: i64,
    delivery: Delivery,
}

/// Each vendor's first product delivers a license key, its second a download.
const DEMO: &[(&str, &str, [DemoProduct; 2])] = &[
    (
        "northwind",
        "Northwind Software",
        [
            DemoProduct {
                name: "Northwind Notes Pro",
                description: "A fast, local-first note-taking app with full-text search and Markdown export.\nOne license covers three of your own computers.",
                usd: 1999,
                eur: 1899,
                delivery: Delivery::LicenseKey,
            },
            DemoProduct {
                name: "Northwind Icon Pack",
                description: "1,200 hand-drawn interface icons in SVG and PNG, in four weights.\nDelivered as a single download.",
                usd: 900,
                eur: 850,
                delivery: Delivery::Download,
            },
        ],
    ),
    (
        "lumen-labs",
        "Lumen Labs",
        [
            DemoProduct {
                name: "Lumen Photo Studio",
                description: "Non-destructive RAW photo editing with lens profiles and batch export.\nYour license key unlocks all features.",
                usd: 4900,
                eur: 4500,
                delivery: Delivery::LicenseKey,
            },
            DemoProduct {
                name: "Lumen Film Presets",
                description: "Forty colour presets modelled on classic film stocks, for Lumen Photo Studio and other editors.",
                usd: 1500,
                eur: 1400,
                delivery: Delivery::Download,
            },
        ],
    ),
];

/// Inserts the demo vendors and products in one unit of work, unless they
/// are already there. Returns whether anything was inserted.
pub async fn seed(db: &Db, clock: &dyn Clock) -> Result<bool, AppError> {
    let usd = Currency::parse("USD")?;
    let eur = Currency::parse("EUR")?;
    let now = clock.now();
    let mut vendors = Vec::new();
    let mut products = Vec::new();
    for (slug, name, items) in DEMO {
        let vendor = NewVendor::new(slug, name, now)?.vendor().clone();
        if db.vendor_by_slug(&vendor.slug).await?.is_some() {
            continue;
        }
        for item in items {
            let prices = Prices::new([Money::new(item.usd, usd)?, Money::new(item.eur, eur)?])?;
            products.push(NewProduct::new(vendor.id.clone(), item.name, item.description, prices, item.delivery, now)?);
        }
        vendors.push(vendor);
    }
    if vendors.is_empty() {
        return Ok(false);
    }
    db.write(unit!(|tx| {
        for vendor in &vendors {
            tx.insert_vendor(vendor).await?;
        }
        for product in &products {
            tx.insert_product(product).await?;
        }
        Ok::<_, AppError>(())
    }))
    .await?;
    Ok(true)
}

/// Gives each demo download product a small file, unless it has one.
pub async fn seed_files(db: &Db, checkout: &crate::checkout::CheckoutService) -> Result<(), AppError> {
    for (slug, _, items) in DEMO {
        let slug = coffer_domain::VendorSlug::parse(slug)?;
        let Some(vendor) = db.vendor_by_slug(&slug).await? else { continue };
        // Unlisted until their file is there, so the vendor's own list.
        for product in db.vendor_products(&vendor.id, None, 100).await?.products {
            if !product.delivery.has_download() || db.product_file(&product.id).await?.is_some() {
                continue;
            }
            let Some(item) = items.iter().find(|i| i.name == product.name) else { continue };
            let file_name = format!("{}-demo.txt", product.name.to_lowercase().replace(' ', "-"));
            let text = format!(
                "{}\n\n{}\n\nThis is the demo download of a Coffer demo product. A real vendor uploads the real file.\n",
                product.name, item.description
            );
            checkout
                .fulfilment()
                .put_product_file(&product.id, &file_name, "text/plain; charset=utf-8", text.as_bytes())
                .await?;
        }
    }
    Ok(())
}

/// The demo customer's email address.
pub const DEMO_CUSTOMER_EMAIL: &str = "dana@demo.coffer.test";

/// Creates the demo customer record unless it exists. Returns whether it
/// was created.
pub async fn seed_customer(customers: &crate::privacy::CustomerService) -> Result<bool, AppError> {
    if customers.find_by_email(DEMO_CUSTOMER_EMAIL).await?.is_some() {
        return Ok(false);
    }
    let details = coffer_domain::CustomerDetails {
        name: "Dana Demo".into(),
        email: DEMO_CUSTOMER_EMAIL.into(),
        phone: Some("+1 555 0100".into()),
        address: Some(coffer_domain::MailingAddress {
            line1: "1 Demo Way".into(),
            line2: String::new(),
            city: "Springfield".into(),
            region: "IL".into(),
            postal_code: "62701".into(),
            country: "US".into(),
        }),
    };
    customers.create(&details, &coffer_domain::Actor::System).await?;
    Ok(true)
}

/// The demo customer's password (demo data is for a local run only).
pub const DEMO_CUSTOMER_PASSWORD: &str = "demo lantern orbit 2026";

/// Gives the demo customer the demo password unless they have one.
pub async fn seed_customer_password(
    customers: &crate::privacy::CustomerService,
    accounts: &crate::accounts::AccountService,
) -> Result<(), AppError> {
    let Some(id) = customers.find_by_email(DEMO_CUSTOMER_EMAIL).await? else { return Ok(()) };
    if accounts.has_password(&id).await? {
        return Ok(());
    }
    accounts.set_demo_password(&id, secrecy::SecretString::from(DEMO_CUSTOMER_PASSWORD)).await
}

/// The demo staff: one per role, password, and a TOTP secret made at seeding.
pub const DEMO_STAFF: &[(coffer_domain::StaffRole, &str, &str)] = &[
    (coffer_domain::StaffRole::Support, "support@demo.coffer.test", "demo support harbor 2026"),
    (coffer_domain::StaffRole::Reviewer, "reviewer@demo.coffer.test", "demo reviewer meadow 2026"),
    (coffer_domain::StaffRole::Dpo, "dpo@demo.coffer.test", "demo privacy compass 2026"),
    (coffer_domain::StaffRole::Admin, "admin@demo.coffer.test", "demo admin lighthouse 2026"),
];

/// Each demo vendor's owner, in the order of the demo vendors: address
/// and password (a TOTP secret is made at seeding).
pub const DEMO_VENDOR_OWNERS: &[(&str, &str)] = &[
    ("owner@northwind.demo.coffer.test", "demo northwind compass 2026"),
    ("owner@lumen-labs.demo.coffer.test", "demo lumen prism 2026"),
];

/// Adds and enrols the demo staff unless they exist.
pub async fn seed_staff(staff: &crate::accounts::StaffService) -> Result<(), AppError> {
    for (role, email, password) in DEMO_STAFF {
        staff.seed_demo_member(email, *role, password).await?;
    }
    Ok(())
}

/// A demo staff member as `demo-credentials.json` lists them.
#[derive(Debug, Serialize)]
pub struct DemoStaffCredentials {
    pub role: &'static str,
    pub email: String,
    pub password: String,
    /// Base32 (RFC 4648, no padding), for an authenticator app.
    pub totp_secret: String,
}

/// The shape of `demo-credentials.json` (see CONTRACT.md).
#[derive(Debug, Serialize)]
pub struct DemoCredentials {
    pub base_url: String,
    pub vendors: Vec<DemoVendorCredentials>,
    pub staff: Vec<DemoStaffCredentials>,
    /// The demo customer and their password.
    pub customer: DemoCustomerCredentials,
}

#[derive(Debug, Serialize)]
pub struct DemoCustomerCredentials {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize)]
pub struct DemoVendorCredentials {
    pub slug: String,
    pub name: String,
    /// For `Authorization: Bearer` on the vendor API.
    pub api_key: String,
    /// The vendor's owner in the portal (`/vendor`).
    pub user_email: String,
    pub password: String,
    /// Base32 (RFC 4648, no padding), for an authenticator app.
    pub totp_secret: String,
    /// The raw Ed25519 public key (standard base64) license keys verify against.
    pub license_public_key: String,
    pub products: Vec<DemoProductCredentials>,
}

#[derive(Debug, Serialize)]
pub struct DemoProductCredentials {
    pub id: String,
    pub name: String,
    pub delivery: Delivery,
    pub prices: BTreeMap<String, i64>,
}

/// Reads back what the demo seed created, with the server's real address.
pub async fn credentials(
    db: &Db,
    staff_service: &crate::accounts::StaffService,
    checkout: &crate::checkout::CheckoutService,
    vendor_service: &crate::vendors::VendorService,
    base_url: &str,
) -> Result<DemoCredentials, AppError> {
    let mut staff = Vec::new();
    for (role, email, password) in DEMO_STAFF {
        if let Some(totp_secret) = staff_service.demo_totp_secret(email).await? {
            staff.push(DemoStaffCredentials {
                role: role.as_str(),
                email: (*email).to_owned(),
                password: (*password).to_owned(),
                totp_secret,
            });
        }
    }
    let mut vendors = Vec::new();
    for ((slug, _, _), (user_email, password)) in DEMO.iter().zip(DEMO_VENDOR_OWNERS) {
        let slug = coffer_domain::VendorSlug::parse(slug)?;
        let Some(vendor) = db.vendor_by_slug(&slug).await? else { continue };
        let products = db
            .vendor_products(&vendor.id, None, 100)
            .await?
            .products
            .into_iter()
            .map(|p| DemoProductCredentials {
                id: p.id.to_string(),
                name: p.name,
                delivery: p.delivery,
                prices: p.prices.iter().map(|m| (m.currency().code().to_owned(), m.minor())).collect(),
            })
            .collect();
        let license_public_key = checkout.fulfilment().license_signer(&vendor.id).await?.public_key_base64();
        let api_key = vendor_service.demo_api_key(&vendor.id).await?;
        let totp_secret = vendor_service.seed_demo_owner(&vendor.id, user_email, password).await?;
        vendors.push(DemoVendorCredentials {
            slug: vendor.slug.to_string(),
            name: vendor.name,
            api_key,
            user_email: (*user_email).to_owned(),
            password: (*password).to_owned(),
            totp_secret,
            license_public_key,
            products,
        });
    }
    Ok(DemoCredentials {
        base_url: base_url.to_owned(),
        vendors,
        staff,
        customer: DemoCustomerCredentials {
            email: DEMO_CUSTOMER_EMAIL.to_owned(),
            password: DEMO_CUSTOMER_PASSWORD.to_owned(),
        },
    })
}
