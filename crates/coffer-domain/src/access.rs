//! Who is acting (the principal) and what they may do (permissions), with
//! the one table that maps staff roles to permissions. Services check a
//! named permission inside, so a command-line call or a future route cannot
//! skip a rule that used to live only at the web edge.

use crate::audit::Actor;
use crate::staff::StaffRole;

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
}

impl Permission {
    pub const ALL: [Permission; 15] = [
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
            Principal::VendorKey(_) => permission == Permission::ReadOwnVendorOrders,
            // Scoped to the customer by the service (`RequestContext::own_account`).
            Principal::Customer(_) => permission == Permission::UseOwnAccount,
        }
    }

    /// The vendor a vendor principal acts for, when it may do `permission`.
    pub fn vendor(&self, permission: Permission) -> Option<&str> {
        match self {
            Principal::VendorKey(id) if self.may(permission) => Some(id),
            _ => None,
        }
    }

    /// The audit log's name for this principal.
    pub fn actor(&self) -> Actor {
        match self {
            Principal::Customer(id) => Actor::Customer(id.clone()),
            Principal::Staff { id, .. } => Actor::Staff(id.clone()),
            Principal::VendorKey(id) => Actor::Vendor(id.clone()),
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
            // Adding staff is the admins' own.
            let admins_own = permission == Permission::AddStaff;
            assert_eq!(staff(StaffRole::Admin).may(permission), others || admins_own, "{permission:?}");
            let customer = Principal::Customer("cus_1".into());
            assert_eq!(customer.may(permission), permission == Permission::UseOwnAccount, "{permission:?}");
            let vendor = Principal::VendorKey("ven_1".into());
            assert_eq!(vendor.may(permission), permission == Permission::ReadOwnVendorOrders, "{permission:?}");
        }
        assert_eq!(Principal::VendorKey("ven_1".into()).vendor(Permission::ReadOwnVendorOrders), Some("ven_1"));
        assert_eq!(staff(StaffRole::Admin).vendor(Permission::ReadOwnVendorOrders), None);
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
