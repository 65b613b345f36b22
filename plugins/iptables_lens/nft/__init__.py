"""The nftables dialect: `nft list ruleset` text and `nft -j list ruleset` JSON, read into one model."""
