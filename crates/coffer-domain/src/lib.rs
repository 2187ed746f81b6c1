//! The rules of Coffer, free of I/O and async: identifiers, money, the
//! catalog (vendors and products) with their validation, and the clock
//! abstraction every timestamp comes from. Later issues add the order state
//! machine, fraud screening and the data inventory here. Nothing in this crate
//! talks to a database, the network or the system clock, so every rule can be
//! tested on its own.

pub mod catalog;
pub mod clock;
pub mod id;
pub mod money;

pub use catalog::{CatalogError, Delivery, NewProduct, NewVendor, Product, Vendor, VendorSlug};
pub use clock::{Clock, ManualClock, Millis};
pub use id::{IdError, ProductId, VendorId};
pub use money::{Currency, Money, MoneyError, Prices};
