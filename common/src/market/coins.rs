//! The coins the simulated provider knows: real CoinGecko ids, symbols and names, with a
//! reference price (USD) and circulating supply that anchor the simulation.

/// One built-in coin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuiltinCoin {
    /// CoinGecko id, e.g. `bitcoin`.
    pub id: &'static str,
    /// Ticker, e.g. `btc`.
    pub symbol: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Reference price in USD the simulation moves around.
    pub reference_usd: f64,
    /// Circulating supply, for market capitalisation.
    pub supply: f64,
}

const fn coin(
    id: &'static str,
    symbol: &'static str,
    name: &'static str,
    reference_usd: f64,
    supply: f64,
) -> BuiltinCoin {
    BuiltinCoin {
        id,
        symbol,
        name,
        reference_usd,
        supply,
    }
}

/// About 100 widely traded coins, roughly in market-cap order.
pub const COINS: &[BuiltinCoin] = &[
    coin("bitcoin", "btc", "Bitcoin", 67_000.0, 19_700_000.0),
    coin("ethereum", "eth", "Ethereum", 3_400.0, 120_000_000.0),
    coin("tether", "usdt", "Tether", 1.0, 110_000_000_000.0),
    coin("binancecoin", "bnb", "BNB", 580.0, 147_000_000.0),
    coin("solana", "sol", "Solana", 150.0, 460_000_000.0),
    coin("usd-coin", "usdc", "USDC", 1.0, 33_000_000_000.0),
    coin("ripple", "xrp", "XRP", 0.55, 55_000_000_000.0),
    coin("dogecoin", "doge", "Dogecoin", 0.15, 144_000_000_000.0),
    coin("the-open-network", "ton", "Toncoin", 6.5, 2_500_000_000.0),
    coin("cardano", "ada", "Cardano", 0.45, 35_000_000_000.0),
    coin("tron", "trx", "TRON", 0.12, 87_000_000_000.0),
    coin("avalanche-2", "avax", "Avalanche", 35.0, 390_000_000.0),
    coin(
        "shiba-inu",
        "shib",
        "Shiba Inu",
        0.000_022,
        589_000_000_000_000.0,
    ),
    coin("chainlink", "link", "Chainlink", 15.0, 587_000_000.0),
    coin("polkadot", "dot", "Polkadot", 7.0, 1_400_000_000.0),
    coin("bitcoin-cash", "bch", "Bitcoin Cash", 450.0, 19_700_000.0),
    coin("near", "near", "NEAR Protocol", 6.0, 1_070_000_000.0),
    coin("matic-network", "matic", "Polygon", 0.7, 9_900_000_000.0),
    coin("litecoin", "ltc", "Litecoin", 80.0, 74_700_000.0),
    coin(
        "internet-computer",
        "icp",
        "Internet Computer",
        12.0,
        464_000_000.0,
    ),
    coin("uniswap", "uni", "Uniswap", 9.0, 600_000_000.0),
    coin("dai", "dai", "Dai", 1.0, 5_300_000_000.0),
    coin("leo-token", "leo", "LEO Token", 5.8, 925_000_000.0),
    coin(
        "ethereum-classic",
        "etc",
        "Ethereum Classic",
        27.0,
        147_000_000.0,
    ),
    coin("aptos", "apt", "Aptos", 9.0, 440_000_000.0),
    coin("stellar", "xlm", "Stellar", 0.11, 29_000_000_000.0),
    coin("monero", "xmr", "Monero", 160.0, 18_400_000.0),
    coin("okb", "okb", "OKB", 50.0, 60_000_000.0),
    coin("filecoin", "fil", "Filecoin", 6.0, 560_000_000.0),
    coin("cosmos", "atom", "Cosmos Hub", 8.5, 390_000_000.0),
    coin("hedera-hashgraph", "hbar", "Hedera", 0.1, 35_700_000_000.0),
    coin("crypto-com-chain", "cro", "Cronos", 0.12, 26_500_000_000.0),
    coin("arbitrum", "arb", "Arbitrum", 1.1, 2_900_000_000.0),
    coin("mantle", "mnt", "Mantle", 1.0, 3_200_000_000.0),
    coin("vechain", "vet", "VeChain", 0.035, 72_700_000_000.0),
    coin("optimism", "op", "Optimism", 2.5, 1_070_000_000.0),
    coin("render-token", "rndr", "Render", 9.0, 388_000_000.0),
    coin("immutable-x", "imx", "Immutable", 2.1, 1_480_000_000.0),
    coin("the-graph", "grt", "The Graph", 0.27, 9_500_000_000.0),
    coin("injective-protocol", "inj", "Injective", 25.0, 93_000_000.0),
    coin("maker", "mkr", "Maker", 2_800.0, 900_000.0),
    coin(
        "theta-token",
        "theta",
        "Theta Network",
        2.0,
        1_000_000_000.0,
    ),
    coin("fantom", "ftm", "Fantom", 0.7, 2_800_000_000.0),
    coin("algorand", "algo", "Algorand", 0.18, 8_100_000_000.0),
    coin("aave", "aave", "Aave", 95.0, 14_800_000.0),
    coin("the-sandbox", "sand", "The Sandbox", 0.45, 2_240_000_000.0),
    coin(
        "decentraland",
        "mana",
        "Decentraland",
        0.45,
        1_890_000_000.0,
    ),
    coin("axie-infinity", "axs", "Axie Infinity", 7.5, 145_000_000.0),
    coin("tezos", "xtz", "Tezos", 0.95, 990_000_000.0),
    coin("eos", "eos", "EOS", 0.8, 1_130_000_000.0),
    coin("elrond-erd-2", "egld", "MultiversX", 38.0, 27_000_000.0),
    coin("flow", "flow", "Flow", 0.9, 1_500_000_000.0),
    coin("chiliz", "chz", "Chiliz", 0.11, 8_900_000_000.0),
    coin("quant-network", "qnt", "Quant", 100.0, 12_000_000.0),
    coin("kucoin-shares", "kcs", "KuCoin", 10.0, 96_000_000.0),
    coin("bitcoin-cash-sv", "bsv", "Bitcoin SV", 60.0, 19_700_000.0),
    coin("neo", "neo", "NEO", 15.0, 70_500_000.0),
    coin("iota", "iota", "IOTA", 0.23, 3_300_000_000.0),
    coin("zcash", "zec", "Zcash", 28.0, 16_000_000.0),
    coin("dash", "dash", "Dash", 30.0, 11_900_000.0),
    coin("kava", "kava", "Kava", 0.6, 1_080_000_000.0),
    coin("curve-dao-token", "crv", "Curve DAO", 0.45, 1_200_000_000.0),
    coin(
        "pancakeswap-token",
        "cake",
        "PancakeSwap",
        2.6,
        270_000_000.0,
    ),
    coin("havven", "snx", "Synthetix", 2.8, 327_000_000.0),
    coin("1inch", "1inch", "1inch", 0.45, 1_260_000_000.0),
    coin(
        "compound-governance-token",
        "comp",
        "Compound",
        60.0,
        8_300_000.0,
    ),
    coin(
        "basic-attention-token",
        "bat",
        "Basic Attention",
        0.25,
        1_490_000_000.0,
    ),
    coin("enjincoin", "enj", "Enjin Coin", 0.3, 1_750_000_000.0),
    coin("loopring", "lrc", "Loopring", 0.25, 1_360_000_000.0),
    coin("zilliqa", "zil", "Zilliqa", 0.022, 18_000_000_000.0),
    coin("gala", "gala", "GALA", 0.04, 35_000_000_000.0),
    coin("apecoin", "ape", "ApeCoin", 1.3, 630_000_000.0),
    coin("lido-dao", "ldo", "Lido DAO", 2.0, 890_000_000.0),
    coin("rocket-pool", "rpl", "Rocket Pool", 25.0, 20_500_000.0),
    coin("frax", "frax", "Frax", 1.0, 650_000_000.0),
    coin("true-usd", "tusd", "TrueUSD", 1.0, 490_000_000.0),
    coin("sui", "sui", "Sui", 1.0, 2_500_000_000.0),
    coin("sei-network", "sei", "Sei", 0.5, 3_000_000_000.0),
    coin("celestia", "tia", "Celestia", 8.0, 190_000_000.0),
    coin("pepe", "pepe", "Pepe", 0.000_012, 420_690_000_000_000.0),
    coin("bonk", "bonk", "Bonk", 0.000_025, 68_000_000_000_000.0),
    coin("dogwifcoin", "wif", "dogwifhat", 2.5, 999_000_000.0),
    coin("floki", "floki", "FLOKI", 0.00018, 9_600_000_000_000.0),
    coin("worldcoin-wld", "wld", "Worldcoin", 3.0, 300_000_000.0),
    coin(
        "jupiter-exchange-solana",
        "jup",
        "Jupiter",
        1.0,
        1_350_000_000.0,
    ),
    coin("ondo-finance", "ondo", "Ondo", 1.0, 1_440_000_000.0),
    coin("ethena", "ena", "Ethena", 0.7, 1_900_000_000.0),
    coin("pyth-network", "pyth", "Pyth Network", 0.4, 3_600_000_000.0),
    coin("starknet", "strk", "Starknet", 1.0, 1_300_000_000.0),
    coin("blur", "blur", "Blur", 0.35, 1_500_000_000.0),
    coin("mina-protocol", "mina", "Mina", 0.8, 1_150_000_000.0),
    coin("helium", "hnt", "Helium", 5.0, 160_000_000.0),
    coin("conflux-token", "cfx", "Conflux", 0.2, 4_000_000_000.0),
    coin("klay-token", "klay", "Klaytn", 0.2, 3_800_000_000.0),
    coin("gmx", "gmx", "GMX", 30.0, 9_500_000.0),
    coin("dydx-chain", "dydx", "dYdX", 2.0, 400_000_000.0),
    coin("ravencoin", "rvn", "Ravencoin", 0.025, 14_000_000_000.0),
    coin("qtum", "qtum", "Qtum", 3.5, 105_000_000.0),
    coin("waves", "waves", "Waves", 2.0, 120_000_000.0),
    coin("ontology", "ont", "Ontology", 0.3, 900_000_000.0),
    coin("harmony", "one", "Harmony", 0.02, 14_000_000_000.0),
    coin("ankr", "ankr", "Ankr", 0.04, 10_000_000_000.0),
    coin("storj", "storj", "Storj", 0.5, 400_000_000.0),
    coin("siacoin", "sc", "Siacoin", 0.008, 56_000_000_000.0),
    coin("holotoken", "hot", "Holo", 0.002, 177_000_000_000.0),
    coin(
        "nervos-network",
        "ckb",
        "Nervos Network",
        0.015,
        44_000_000_000.0,
    ),
];

/// The built-in coin with this id.
pub fn find(id: &str) -> Option<&'static BuiltinCoin> {
    COINS.iter().find(|coin| coin.id == id)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_and_symbols_are_unique_and_plausible() {
        let ids: HashSet<_> = COINS.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), COINS.len());
        assert!(COINS.len() >= 100, "about 100 coins, have {}", COINS.len());
        for coin in COINS {
            assert!(coin.reference_usd > 0.0 && coin.supply > 0.0, "{}", coin.id);
            assert_eq!(coin.id, coin.id.to_lowercase());
        }
        assert_eq!(find("bitcoin").map(|c| c.symbol), Some("btc"));
    }
}
