//! Namespace bundles (Pulsar's): the 32-bit hash space split into `count` equal ranges; a
//! topic belongs to the range its Murmur3-32 hash (of the full name) falls in. Bundle names
//! are Pulsar's: `0x00000000_0x40000000`, …, `0xc0000000_0xffffffff`.

use crate::sticky_key::murmur3_32;

/// Bundles per namespace unless configured otherwise (Pulsar's default).
pub const DEFAULT_BUNDLES: u32 = 4;

/// `tenant/namespace` of a full topic name (`persistent://tenant/namespace/local`).
pub fn namespace_of(topic: &str) -> &str {
    let rest = topic.split_once("://").map_or(topic, |(_, r)| r);
    match rest.rfind('/') {
        Some(i) => &rest[..i],
        None => rest,
    }
}

/// The name of the bundle of `topic` among `count` bundles.
pub fn bundle_of(topic: &str, count: u32) -> String {
    let count = u64::from(count.max(1));
    let hash = u64::from(murmur3_32(topic.as_bytes()));
    let width = (1u64 << 32) / count;
    let i = (hash / width).min(count - 1);
    let start = i * width;
    let end = if i + 1 == count {
        0xffff_ffff
    } else {
        (i + 1) * width
    };
    format!("0x{start:08x}_0x{end:08x}")
}

/// Every bundle name among `count` bundles, in hash order.
pub fn all(count: u32) -> Vec<String> {
    let count = u64::from(count.max(1));
    let width = (1u64 << 32) / count;
    (0..count)
        .map(|i| {
            let end = if i + 1 == count {
                0xffff_ffff
            } else {
                (i + 1) * width
            };
            format!("0x{:08x}_0x{end:08x}", i * width)
        })
        .collect()
}

/// The hash boundaries of `count` bundles, as Pulsar lists them (`0x00000000` … `0xffffffff`).
pub fn boundaries(count: u32) -> Vec<String> {
    let count = u64::from(count.max(1));
    let width = (1u64 << 32) / count;
    (0..count)
        .map(|i| format!("0x{:08x}", i * width))
        .chain(std::iter::once("0xffffffff".to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ranges() {
        assert_eq!(
            namespace_of("persistent://public/default/t"),
            "public/default"
        );
        let names: std::collections::BTreeSet<String> = (0..2000)
            .map(|i| bundle_of(&format!("persistent://a/b/t{i}"), 4))
            .collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                "0x00000000_0x40000000",
                "0x40000000_0x80000000",
                "0x80000000_0xc0000000",
                "0xc0000000_0xffffffff"
            ]
        );
        assert_eq!(bundle_of("persistent://a/b/x", 1), "0x00000000_0xffffffff");
        assert_eq!(all(4), names_seen(4));
        assert_eq!(all(1), ["0x00000000_0xffffffff"]);
    }

    fn names_seen(count: u32) -> Vec<String> {
        let names: std::collections::BTreeSet<String> = (0..2000)
            .map(|i| bundle_of(&format!("persistent://a/b/t{i}"), count))
            .collect();
        names.into_iter().collect()
    }
}
