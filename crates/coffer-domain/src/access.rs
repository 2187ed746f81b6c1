//! Who is acting (the principal) and what they may do (permissions), with
//! the one table that maps staff roles to permissions. Services check a
//! named permission inside, so a command-line call or a future route cannot
//! skip a rule that used to live only at the web edge.

use crate::audit::Actor;
use crate::staff::StaffRole;
use crate::vendor::VendorRole;

/// Something a principal may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Open an order with its buyer in the staff console (audited).
    ReadOrderForStaff,
    /// Approve a held order, which delivers it.
    ApproveOrder,
    /// Reject a held order and void its payment.
    RejectOrder,
    /// Mark a bank transfer received, which delivers the order.
    MarkTransferReceived,
    /// Refund an order or one of its lines.
    RefundOrder,
    /// Cancel a hold nobody reviewed, or a bank transfer that never came,
    /// in time (the retention job).
    ExpireOrders,
    /// See a held order's proof of identity (audited).
    ViewIdentityDocument,
    /// The queue of held orders.
    ReadReviewQueue,
    /// The queue of bank transfers waiting.
    ReadTransferQueue,
    /// Written data requests and their deadlines.
    ReadPrivacyRequests,
    /// Export everything held about a customer, found by email (audited).
    ExportCustomerData,
    /// Erase a customer (crypto-shredding) on their behalf; a customer
    /// erases their own account without it.
    EraseCustomer,
    /// Add a staff member (or renew an enrolment link).
    AddStaff,
    /// A vendor's own orders, without buyers but as `vendor_may_see_buyer`
    /// allows; only ever its own.
    ReadOwnVendorOrders,
    /// A signed-in customer's own account: details, orders, invoices,
    /// sign-in settings, export, deletion; only ever their own.
    UseOwnAccount,
    /// Add, list, suspend and reinstate vendors (admins, the command line).
    ManageVendors,
    /// A vendor's own products and their files: create, edit, publish.
    ManageOwnProducts,
    /// A vendor's own statement: what the operator owes it.
    ReadOwnStatement,
    /// A vendor's own webhook endpoints and their delivery log.
    ManageOwnWebhooks,
    /// A vendor's own API keys: create (shown once) and revoke. Owners only.
    ManageOwnApiKeys,
    /// A vendor's own portal users: invite and remove. Owners only.
    ManageOwnMembers,
    /// A vendor's data-processing terms and its privacy contact. Owners only.
    ManageOwnTerms,
}

impl Permission {
    pub const ALL: [Permission; 22] = [
        Permission::ReadOrderForStaff,
        Permission::ApproveOrder,
        Permission::RejectOrder,
        Permission::MarkTransferReceived,
        Permission::RefundOrder,
        Permission::ExpireOrders,
        Permission::ViewIdentityDocument,
        Permission::ReadReviewQueue,
        Permission::ReadTransferQueue,
        Permission::ReadPrivacyRequests,
        Permission::ExportCustomerData,
        Permission::EraseCustomer,
        Permission::AddStaff,
        Permission::ReadOwnVendorOrders,
        Permission::UseOwnAccount,
        Permission::ManageVendors,
        Permission::ManageOwnProducts,
        Permission::ReadOwnStatement,
        Permission::ManageOwnWebhooks,
        Permission::ManageOwnApiKeys,
        Permission::ManageOwnMembers,
        Permission::ManageOwnTerms,
    ];
}

/// The one table of what each staff role may do. Admins may do what every
/// role may, except what only the system does, and add staff.
pub fn role_permissions(role: StaffRole) -> &'static [Permission] {
    use Permission::*;
    match role {
        StaffRole::Support => &[ReadOrderForStaff, MarkTransferReceived, RefundOrder, ReadTransferQueue],
        StaffRole::Reviewer => &[ReadOrderForStaff, ApproveOrder, RejectOrder, ViewIdentityDocument, ReadReviewQueue],
        StaffRole::Dpo => &[ReadPrivacyRequests, ExportCustomerData, EraseCustomer],
        StaffRole::Admin => &[
            ReadOrderForStaff,
            ApproveOrder,
            RejectOrder,
            MarkTransferReceived,
            RefundOrder,
            ViewIdentityDocument,
            ReadReviewQueue,
            ReadTransferQueue,
            ReadPrivacyRequests,
            ExportCustomerData,
            EraseCustomer,
            AddStaff,
            ManageVendors,
        ],
    }
}

/// What a vendor's principals may do, always scoped to their own vendor by
/// the service (`Principal::vendor`). A program (API key) works with
/// orders, products, webhooks and the statement; the people who hold the
/// vendor's duties (owners) also manage keys, members and the terms.
pub fn vendor_permissions(role: Option<VendorRole>) -> &'static [Permission] {
    use Permission::*;
    match role {
        None => &[ReadOwnVendorOrders, ManageOwnProducts, ReadOwnStatement, ManageOwnWebhooks],
        Some(VendorRole::Member) => &[ReadOwnVendorOrders, ManageOwnProducts, ReadOwnStatement],
        Some(VendorRole::Owner) => &[
            ReadOwnVendorOrders,
            ManageOwnProducts,
            ReadOwnStatement,
            ManageOwnWebhooks,
            ManageOwnApiKeys,
            ManageOwnMembers,
            ManageOwnTerms,
        ],
    }
}

/// Who is acting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in customer, on their own account only.
    Customer(String),
    /// A signed-in staff member with their role.
    Staff { id: String, role: StaffRole },
    /// A vendor's program, by vendor id.
    VendorKey(String),
    /// A signed-in user of a vendor's portal, with their vendor and role.
    VendorUser { id: String, vendor: String, role: VendorRole },
    /// An operator at the command line (the machine's own account).
    Cli(String),
    /// The server's own jobs.
    System,
}

impl Principal {
    /// Whether this principal may do `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        match self {
            Principal::Staff { role, .. } => role_permissions(*role).contains(&permission),
            // The operator at the machine may do what an admin may.
            Principal::Cli(_) => role_permissions(StaffRole::Admin).contains(&permission),
            Principal::System => permission == Permission::ExpireOrders,
            // Scoped to the vendor by the service (`Principal::vendor`).
            Principal::VendorKey(_) => vendor_permissions(None).contains(&permission),
            Principal::VendorUser { role, .. } => vendor_permissions(Some(*role)).contains(&permission),
            // Scoped to the customer by the service (`RequestContext::own_account`).
            Principal::Customer(_) => permission == Permission::UseOwnAccount,
        }
    }

    /// The vendor a vendor principal acts for, when it may do `permission`.
    pub fn vendor(&self, permission: Permission) -> Option<&str> {
        match self {
            Principal::VendorKey(id) if self.may(permission) => Some(id),
            Principal::VendorUser { vendor, .. } if self.may(permission) => Some(vendor),
            _ => None,
        }
    }

    /// The audit log's name for this principal.
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Customer(id) => Actor::Customer(id.clone()),
            Principal::Staff { id, .. } => Actor::Staff(id.clone()),
            Principal::VendorKey(id) => Actor::Vendor(id.clone()),
            Principal::VendorUser { id, .. } => Actor::VendorUser(id.clone()),
            Principal::Cli(name) => Actor::Cli(name.clone()),
            Principal::System => Actor::System,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staff(role: StaffRole) -> Principal {
        Principal::Staff { id: "stf_1".into(), role }
    }

    #[test]
    fn the_table_gives_each_role_its_own_and_admins_all_but_the_systems() {
        assert!(staff(StaffRole::Support).may(Permission::RefundOrder));
        assert!(!staff(StaffRole::Support).may(Permission::ApproveOrder));
        assert!(staff(StaffRole::Reviewer).may(Permission::ViewIdentityDocument));
        assert!(!staff(StaffRole::Reviewer).may(Permission::RefundOrder));
        assert!(!staff(StaffRole::Dpo).may(Permission::ReadOrderForStaff));
        for permission in Permission::ALL {
            let others =
                StaffRole::ALL.iter().any(|r| *r != StaffRole::Admin && role_permissions(*r).contains(&permission));
            // Adding staff and managing vendors are the admins' own.
            let admins_own = matches!(permission, Permission::AddStaff | Permission::ManageVendors);
            assert_eq!(staff(StaffRole::Admin).may(permission), others || admins_own, "{permission:?}");
            let customer = Principal::Customer("cus_1".into());
            assert_eq!(customer.may(permission), permission == Permission::UseOwnAccount, "{permission:?}");
            let vendor = Principal::VendorKey("ven_1".into());
            assert_eq!(vendor.may(permission), vendor_permissions(None).contains(&permission), "{permission:?}");
            let member = Principal::VendorUser { id: "vus_1".into(), vendor: "ven_1".into(), role: VendorRole::Member };
            let owner = Principal::VendorUser { id: "vus_2".into(), vendor: "ven_1".into(), role: VendorRole::Owner };
            // Whatever a member or a key may, an owner may; no vendor
            // principal holds a staff or customer permission.
            assert!(!member.may(permission) || owner.may(permission), "{permission:?}");
            assert!(!vendor.may(permission) || owner.may(permission), "{permission:?}");
            if staff(StaffRole::Admin).may(permission) || permission == Permission::UseOwnAccount {
                assert!(!owner.may(permission), "{permission:?}");
            }
        }
        assert_eq!(Principal::VendorKey("ven_1".into()).vendor(Permission::ReadOwnVendorOrders), Some("ven_1"));
        assert_eq!(staff(StaffRole::Admin).vendor(Permission::ReadOwnVendorOrders), None);
        let member = Principal::VendorUser { id: "vus_1".into(), vendor: "ven_9".into(), role: VendorRole::Member };
        assert_eq!(member.vendor(Permission::ReadOwnVendorOrders), Some("ven_9"));
        assert_eq!(member.vendor(Permission::ManageOwnApiKeys), None, "keys are the owners'");
        assert!(staff(StaffRole::Admin).may(Permission::ManageVendors));
        assert!(!staff(StaffRole::Support).may(Permission::ManageVendors));
        assert!(
            staff(StaffRole::Dpo).may(Permission::EraseCustomer)
                && !staff(StaffRole::Support).may(Permission::EraseCustomer)
        );
        assert!(!staff(StaffRole::Dpo).may(Permission::AddStaff));
        assert!(Principal::System.may(Permission::ExpireOrders));
        assert!(!Principal::System.may(Permission::RefundOrder));
        assert!(!staff(StaffRole::Admin).may(Permission::ExpireOrders), "only the job expires orders");
    }
}
