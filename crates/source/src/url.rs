//! URL handling: parsing is [`capstan_core::git_url`] (credentials split off the URL before anything
//! else sees it, shared with the webhook receiver); here the mirror directory named after a URL.

use sha2::{Digest, Sha256};

pub use capstan_core::git_url::{RemoteUrl, redact_userinfo};

/// A directory name for the mirror: readable prefix plus a hash of the key, never credentials.
pub fn mirror_dir_name(url: &RemoteUrl) -> String {
    let readable: String = url
        .cache_key
        .split_once("://")
        .map_or(url.cache_key.as_str(), |(_, rest)| rest)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let hash = Sha256::digest(url.cache_key.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{hex}.git")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_mirror_directory() {
        let url =
            RemoteUrl::parse("https://alice:s3cret@Git.Example.com/org/repo.git/").expect("valid");
        assert!(!mirror_dir_name(&url).contains("s3cret"));
        assert!(!mirror_dir_name(&url).contains("alice"));
        let same = RemoteUrl::parse("https://git.example.com/org/repo").expect("valid");
        assert_eq!(mirror_dir_name(&same), mirror_dir_name(&url));
    }
}
