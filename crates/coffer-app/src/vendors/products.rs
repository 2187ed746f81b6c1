//! A vendor's own products: listed with drafts, created, edited, published
//! and withdrawn, by its portal users and its API keys alike. Another
//! vendor's product is `NotFound`. Every change clears the catalog's
//! cache, so buyers see it at once.

use super::VendorService;
use crate::AppError;
use crate::accounts::vendor_users::own_vendor;
use crate::request::RequestContext;
use coffer_domain::{Currency, Delivery, Money, MoneyError, NewProduct, Permission, Prices, Product, ProductId};
use coffer_store::ProductPage;
use coffer_store::prelude::*;

/// What a vendor sends to create or edit a product (prices apart, checked
/// by [`parse_prices`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductInput {
    pub name: String,
    pub description: String,
    pub delivery: Delivery,
}

/// Prices as typed: each code an ISO 4217 currency, each amount ≥ 0, at
/// least one; the first bad one names its field (`prices.XXX`).
pub fn parse_prices(typed: &[(String, i64)]) -> Result<Prices, (String, MoneyError)> {
    let mut prices = Vec::with_capacity(typed.len());
    for (code, minor) in typed {
        let field = || format!("prices.{code}");
        let currency = Currency::parse(code).map_err(|e| (field(), e))?;
        prices.push(Money::new(*minor, currency).map_err(|e| (field(), e))?);
    }
    Prices::new(prices).map_err(|e| ("prices".to_owned(), e))
}

impl VendorService {
    /// A page of the vendor's products, drafts and withdrawn ones too.
    pub async fn own_products(
        &self,
        ctx: &RequestContext,
        after: Option<&ProductId>,
        limit: u32,
    ) -> Result<ProductPage, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnProducts)?;
        Ok(self.db.vendor_products(&vendor, after, limit).await?)
    }

    /// One of the vendor's products; another vendor's is `NotFound`.
    pub async fn own_product(&self, ctx: &RequestContext, id: &ProductId) -> Result<Product, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnProducts)?;
        self.db.product(id).await?.filter(|p| p.vendor_id == vendor).ok_or(AppError::NotFound)
    }

    /// Creates a product of the vendor, published or as a draft.
    pub async fn create_own_product(
        &self,
        ctx: &RequestContext,
        input: &ProductInput,
        prices: Prices,
        published: bool,
    ) -> Result<Product, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnProducts)?;
        let mut product =
            NewProduct::new(vendor, &input.name, &input.description, prices, input.delivery, self.clock.now())?;
        product.published = published;
        let id = self.catalog.insert_product(product).await?;
        self.own_product(ctx, &id).await
    }

    /// Replaces a product's name, description, prices and delivery.
    pub async fn edit_own_product(
        &self,
        ctx: &RequestContext,
        id: &ProductId,
        input: &ProductInput,
        prices: Prices,
    ) -> Result<Product, AppError> {
        let current = self.own_product(ctx, id).await?;
        let edited = NewProduct::edited(&current, &input.name, &input.description, prices, input.delivery)?;
        let now = self.clock.now();
        self.db.write(unit!(|tx| tx.update_product(&edited, now).await.map_err(AppError::from))).await?;
        self.catalog.forget_cached();
        self.own_product(ctx, id).await
    }

    /// Publishes or withdraws one of the vendor's products.
    pub async fn publish_own_product(
        &self,
        ctx: &RequestContext,
        id: &ProductId,
        published: bool,
    ) -> Result<Product, AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnProducts)?;
        let (product, now) = (id.clone(), self.clock.now());
        let changed = self
            .db
            .write(unit!(|tx| tx
                .set_product_published(&vendor, &product, published, now)
                .await
                .map_err(AppError::from)))
            .await?;
        if !changed {
            return Err(AppError::NotFound);
        }
        self.catalog.forget_cached();
        self.own_product(ctx, id).await
    }
}

/// A download file as its vendor sees it after the upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedFile {
    pub file_name: String,
    pub size_bytes: i64,
    pub sha256: String,
}

/// A file name as stored: its last path part, printable, at most 200
/// characters; `download` when nothing is left.
pub fn clean_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String =
        last.chars().filter(|c| !c.is_control() && *c != '"').take(200).collect::<String>().trim().to_owned();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." { "download".to_owned() } else { cleaned }
}

impl VendorService {
    /// The largest upload accepted, in bytes.
    pub fn max_upload_bytes(&self) -> usize {
        self.settings.fees.max_upload_bytes
    }

    /// Stores the download file of one of the vendor's products (replacing
    /// any before), through the file store; its size and SHA-256.
    pub async fn upload_own_file(
        &self,
        ctx: &RequestContext,
        id: &ProductId,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<UploadedFile, AppError> {
        let product = self.own_product(ctx, id).await?;
        if bytes.is_empty() {
            return Err(super::VendorError::EmptyFile.into());
        }
        if bytes.len() > self.max_upload_bytes() {
            return Err(super::VendorError::FileTooLarge(self.max_upload_bytes()).into());
        }
        let content_type =
            if content_type.is_empty() || content_type.len() > 100 || content_type.contains(char::is_control) {
                "application/octet-stream"
            } else {
                content_type
            };
        let stored = self
            .settings
            .fulfilment
            .put_product_file(&product.id, &clean_file_name(file_name), content_type, bytes)
            .await?;
        self.catalog.forget_cached();
        Ok(UploadedFile {
            file_name: stored.file_name,
            size_bytes: stored.size_bytes,
            sha256: stored.sha256.unwrap_or_default(),
        })
    }

    /// The download file of one of the vendor's products, if uploaded.
    pub async fn own_file(&self, ctx: &RequestContext, id: &ProductId) -> Result<Option<UploadedFile>, AppError> {
        let product = self.own_product(ctx, id).await?;
        Ok(self.db.product_file(&product.id).await?.map(|f| UploadedFile {
            file_name: f.file_name,
            size_bytes: f.size_bytes,
            sha256: f.sha256.unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_name_the_first_bad_currency() {
        let typed = |pairs: &[(&str, i64)]| pairs.iter().map(|(c, m)| ((*c).to_owned(), *m)).collect::<Vec<_>>();
        assert!(parse_prices(&typed(&[("USD", 1999), ("EUR", 1899)])).is_ok());
        assert_eq!(parse_prices(&typed(&[("USD", 1), ("XXQ", 1)])).unwrap_err().0, "prices.XXQ");
        assert_eq!(parse_prices(&typed(&[("usd", 1)])).unwrap_err().0, "prices.usd");
        assert_eq!(
            parse_prices(&typed(&[("USD", -1)])).unwrap_err(),
            ("prices.USD".into(), MoneyError::NegativeAmount)
        );
        assert_eq!(parse_prices(&[]).unwrap_err(), ("prices".into(), MoneyError::NoPrice));
    }

    #[test]
    fn file_names_lose_paths_and_controls() {
        assert_eq!(clean_file_name("C:\\Users\\me\\tool.zip"), "tool.zip");
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("a\u{0}b\"c.zip"), "abc.zip");
        assert_eq!(clean_file_name(".."), "download");
        assert_eq!(clean_file_name(""), "download");
    }
}
