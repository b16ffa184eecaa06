//! Portfolio transactions as both binaries need them: what a transaction may be
//! ([`rules`]), the files a portfolio is imported from and exported to ([`files`]), the jobs
//! that do it ([`jobs`]) and their queries ([`store`]). The API owns the rest of portfolios
//! (routes, valuation, performance).

pub mod files;
pub mod jobs;
pub mod rules;
pub mod store;

/// What a transaction does to a holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Bought: adds units at a price.
    Buy,
    /// Sold: takes units out at a price.
    Sell,
    /// Moved in from elsewhere: adds units.
    TransferIn,
    /// Moved out: takes units out.
    TransferOut,
}

impl Side {
    /// Every side, in a stable order.
    pub const ALL: [Side; 4] = [Side::Buy, Side::Sell, Side::TransferIn, Side::TransferOut];

    /// Whether the side adds to the holding.
    pub fn is_inflow(self) -> bool {
        matches!(self, Self::Buy | Self::TransferIn)
    }

    /// The stored name (also the name in files and the API).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Sell => "sell",
            Self::TransferIn => "transfer_in",
            Self::TransferOut => "transfer_out",
        }
    }

    /// Parses the stored name.
    pub fn from_db(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|side| side.as_str() == name)
    }
}
