//! Paging of the List* calls. Items come in id order; a page token is opaque to clients (hex of
//! the last id returned, behind a version tag) so that the server may change what it holds.
//! A page holds `page_size` items: 0 means [`DEFAULT_PAGE_SIZE`], more than [`MAX_PAGE_SIZE`]
//! is refused. A list changed between two pages neither repeats nor skips the items that stayed.

use andromede_store::resource::Resource;

use crate::error::ApiError;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;
const TOKEN_TAG: &str = "v1:";

/// Where a page starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    size: usize,
    after: Option<String>,
}

impl Page {
    /// Checks the request's paging fields; a bad one is INVALID_ARGUMENT naming it.
    pub fn new(page_size: u32, page_token: &str) -> Result<Self, ApiError> {
        if page_size > MAX_PAGE_SIZE {
            return Err(ApiError::invalid(
                "page_size",
                format!("must be at most {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
            ));
        }
        let size = if page_size == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            page_size
        };
        let after = match page_token {
            "" => None,
            t => Some(decode(t).ok_or_else(|| {
                ApiError::invalid(
                    "page_token",
                    "is not a next_page_token of this list; start again with an empty page_token",
                )
            })?),
        };
        Ok(Page {
            size: size as usize,
            after,
        })
    }

    /// This page of `items` (in id order) and the token of the next one (empty when none is
    /// left); only the page's items are cloned.
    pub fn take<'a, T: Resource>(&self, items: impl Iterator<Item = &'a T>) -> (Vec<T>, String) {
        let mut page: Vec<T> = items
            .filter(|x| {
                self.after
                    .as_deref()
                    .is_none_or(|a| x.meta().id.as_str() > a)
            })
            .take(self.size + 1)
            .cloned()
            .collect();
        if page.len() <= self.size {
            return (page, String::new());
        }
        page.truncate(self.size);
        let next = page
            .last()
            .map(|x| encode(&x.meta().id))
            .unwrap_or_default();
        (page, next)
    }
}

fn encode(id: &str) -> String {
    hex::encode(format!("{TOKEN_TAG}{id}"))
}

fn decode(token: &str) -> Option<String> {
    let bytes = hex::decode(token).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.strip_prefix(TOKEN_TAG)?;
    (!id.is_empty()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use andromede_api::v1::{Flavor, Meta};

    fn flavors(n: usize) -> Vec<Flavor> {
        (0..n)
            .map(|i| Flavor {
                meta: Some(Meta {
                    id: format!("id-{i:03}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect()
    }

    fn ids(v: &[Flavor]) -> Vec<String> {
        v.iter().map(|f| f.meta().id.clone()).collect()
    }

    fn page(size: u32, token: &str) -> Page {
        match Page::new(size, token) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn pages_cover_the_list_once_each() {
        let all = flavors(7);
        let mut token = String::new();
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let (items, next) = page(3, &token).take(all.iter());
            seen.extend(ids(&items));
            pages += 1;
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, ids(&all));
        assert_eq!(pages, 3);
        // An exact fit ends without an empty extra page.
        let (items, next) = page(7, "").take(all.iter());
        assert_eq!((items.len(), next.as_str()), (7, ""));
    }

    #[test]
    fn default_and_maximum_sizes() {
        let all = flavors(150);
        let (items, next) = page(0, "").take(all.iter());
        assert_eq!(items.len(), DEFAULT_PAGE_SIZE as usize);
        assert!(!next.is_empty());
        assert!(Page::new(MAX_PAGE_SIZE, "").is_ok());
        let err = Page::new(MAX_PAGE_SIZE + 1, "")
            .err()
            .map(|e| tonic::Status::from(e).message().to_owned());
        assert!(err.is_some_and(|e| e.contains("page_size")));
    }

    #[test]
    fn bad_tokens_name_the_field() {
        for bad in ["zz", "00", &hex::encode("v2:x"), &hex::encode("v1:")] {
            let status = match Page::new(10, bad) {
                Err(e) => tonic::Status::from(e),
                Ok(p) => panic!("{bad:?} accepted: {p:?}"),
            };
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(
                status.message().contains("page_token"),
                "{}",
                status.message()
            );
        }
    }
}
