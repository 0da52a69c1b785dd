//! Following the pages of a List* call to the end, for callers that want the whole list.

use std::future::Future;

use andromede_api::v1::*;
use tonic::Status;

/// How many items each page asks for: large enough that a list takes few calls, small enough
/// that a page of big items stays well under the 4 MiB message limit.
pub const PAGE_SIZE: u32 = 500;

/// A List* request: where its page starts and how long it is.
pub trait PagedRequest: Clone {
    fn set_page(&mut self, size: u32, token: String);
}

/// A List* response: its items and the token of the next page.
pub trait PagedResponse {
    fn next_page_token(&self) -> &str;
    /// Adds the items of the next page after these.
    fn append(&mut self, next: Self);
}

macro_rules! paged {
    (requests: $($req:ty),*; responses: $($resp:ty => $items:ident),*) => {
        $(impl PagedRequest for $req {
            fn set_page(&mut self, size: u32, token: String) {
                self.page_size = size;
                self.page_token = token;
            }
        })*
        $(impl PagedResponse for $resp {
            fn next_page_token(&self) -> &str {
                &self.next_page_token
            }
            fn append(&mut self, next: Self) {
                self.$items.extend(next.$items);
                self.next_page_token = next.next_page_token;
            }
        })*
    };
}

paged!(
    requests: ListRequest, ListDatacentersRequest, ListHostsRequest, ListJoinTokensRequest,
        ListTokensRequest;
    responses:
        ListInstancesResponse => instances,
        ListServerGroupsResponse => server_groups,
        ListProjectsResponse => projects,
        ListVolumesResponse => volumes,
        ListDatacentersResponse => datacenters,
        ListHostsResponse => hosts,
        ListJoinTokensResponse => join_tokens,
        ListFlavorsResponse => flavors,
        ListImagesResponse => images,
        ListTokensResponse => tokens
);

/// Fetches every page of `req` with `fetch` and returns one response holding all the items
/// (and no next page). A server handing out the same token twice is an error, not a loop.
pub async fn all_pages<Req, Resp, F, Fut>(req: Req, mut fetch: F) -> Result<Resp, Status>
where
    Req: PagedRequest,
    Resp: PagedResponse,
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>>,
{
    let page = |token: String| {
        let mut r = req.clone();
        r.set_page(PAGE_SIZE, token);
        r
    };
    let mut all = fetch(page(String::new())).await?;
    loop {
        let token = all.next_page_token().to_owned();
        if token.is_empty() {
            return Ok(all);
        }
        let next = fetch(page(token.clone())).await?;
        if next.next_page_token() == token {
            return Err(Status::internal(
                "the server returned the same page token twice; the list cannot be followed",
            ));
        }
        all.append(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(id: &str) -> Flavor {
        Flavor {
            meta: Some(Meta {
                id: id.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A server holding flavors a..e that pages them two at a time.
    async fn serve(req: ListRequest) -> Result<ListFlavorsResponse, Status> {
        assert_eq!(req.page_size, PAGE_SIZE);
        assert_eq!(req.project, "p", "the request is sent as given");
        let (ids, next): (&[&str], &str) = match req.page_token.as_str() {
            "" => (&["a", "b"], "t1"),
            "t1" => (&["c", "d"], "t2"),
            "t2" => (&["e"], ""),
            other => return Err(Status::invalid_argument(format!("page_token {other}"))),
        };
        Ok(ListFlavorsResponse {
            flavors: ids.iter().map(|i| flavor(i)).collect(),
            next_page_token: next.to_owned(),
        })
    }

    #[tokio::test]
    async fn follows_every_page() {
        let req = ListRequest {
            project: "p".into(),
            ..Default::default()
        };
        let all = all_pages(req, serve).await;
        let ids: Vec<String> = all
            .map(|r| {
                r.flavors
                    .into_iter()
                    .filter_map(|f| f.meta)
                    .map(|m| m.id)
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    }

    #[tokio::test]
    async fn follows_the_pages_of_api_tokens() {
        let req = ListTokensRequest {
            include_inactive: true,
            ..Default::default()
        };
        let all = all_pages(req, |r: ListTokensRequest| async move {
            assert!(r.include_inactive, "the filter is kept on every page");
            let (name, next) = match r.page_token.as_str() {
                "" => ("a", "t1"),
                _ => ("b", ""),
            };
            Ok(ListTokensResponse {
                tokens: vec![ApiToken {
                    meta: Some(Meta {
                        name: name.to_owned(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                next_page_token: next.to_owned(),
            })
        })
        .await;
        let names: Vec<String> = all
            .map(|r| {
                r.tokens
                    .into_iter()
                    .filter_map(|t| t.meta)
                    .map(|m| m.name)
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(names, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_repeated_token_is_an_error() {
        let r = all_pages(ListRequest::default(), |_| async {
            Ok(ListFlavorsResponse {
                next_page_token: "same".into(),
                ..Default::default()
            })
        })
        .await;
        assert_eq!(r.err().map(|s| s.code()), Some(tonic::Code::Internal));
    }
}
