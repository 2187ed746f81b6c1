//! The catalog's short-lived cache on SQLite and PostgreSQL: a product or a
//! vendor added shows at once in every cached answer (the product list,
//! its rendered forms such as the storefront, and one product by id), not
//! only after the cache period.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_app::{CatalogService, ProductQuery};
use coffer_domain::{Currency, Delivery, ManualClock, Money, Prices};
use coffer_store::{Db, DbOptions};
use coffer_testkit::{TestBackend, TestDatabase};
use std::sync::Arc;

struct Fixture {
    catalog: CatalogService,
    _data: TestDatabase,
}

async fn fixture(backend: TestBackend) -> Fixture {
    let data = TestDatabase::new(backend).await;
    let db = Db::open(&data.url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    // A minute of caching, on a clock that does not move: only clearing
    // can make a new product show.
    let clock = Arc::new(ManualClock::at(1_800_000_000_000));
    Fixture { catalog: CatalogService::new(db, clock, 60_000), _data: data }
}

coffer_testkit::on_both_backends_with!(fixture;
    a_new_product_shows_at_once_in_every_cached_answer,
);

fn all() -> ProductQuery {
    ProductQuery { vendor: None, after: None, limit: 100 }
}

async fn a_new_product_shows_at_once_in_every_cached_answer(f: Fixture) {
    let catalog = &f.catalog;
    let vendor = catalog.create_vendor("acme", "Acme Tools").await.unwrap();
    let price = |minor| Prices::new([Money::new(minor, Currency::parse("EUR").unwrap()).unwrap()]).unwrap();
    catalog.create_product(&vendor.id, "First", "The first.", price(1000), Delivery::LicenseKey).await.unwrap();
    // Cached: the list, a rendering of it, and a miss for an id not made yet.
    let names = |page: &coffer_app::ProductPage| page.products.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&catalog.products(&all()).await.unwrap()), ["First"]);
    let render = |page: &coffer_app::ProductPage| Ok(names(page).join(",").into_bytes());
    assert_eq!(&*catalog.rendered_products(&all(), "names", render).await.unwrap(), b"First");
    // A license product: a download is listed only once its file is there.
    let second = catalog.create_product(&vendor.id, "Second", "The second.", price(2000), Delivery::LicenseKey);
    let second = second.await.unwrap();
    let mut listed = names(&catalog.products(&all()).await.unwrap());
    listed.sort();
    assert_eq!(listed, ["First", "Second"], "the list at once, not after the cache period");
    let rendered = catalog.rendered_products(&all(), "names", render).await.unwrap();
    assert!(String::from_utf8_lossy(&rendered).contains("Second"), "its rendering too");
    assert_eq!(catalog.product(&second).await.unwrap().name, "Second", "by id");
    // A vendor added clears them too (its products list under its slug).
    catalog.create_vendor("zeta", "Zeta Labs").await.unwrap();
    assert_eq!(catalog.vendors().await.unwrap().len(), 2);
}
