//! InfrastructureService: datacenters, hosts, flavors and images.

use super::{check, find, meta, stale, Api};
use crate::error::ApiError;
use crate::node::Proposal;
use crate::reply;
use andromede_api::v1::infrastructure_service_server::InfrastructureService;
use andromede_api::v1::*;
use andromede_model::capacity::DEFAULT_RATIOS;
use andromede_model::validate::{self as val, Violations};
use andromede_store::resource::Resource;
use andromede_store::Command;
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn lower_sum(mut f: ImageFile) -> ImageFile {
    f.checksum_sha256 = f.checksum_sha256.to_ascii_lowercase();
    f
}

/// Longest a join token may live.
const MAX_JOIN_TTL_SECS: u64 = 7 * 24 * 3600;

fn check_operator(v: &mut Violations, op: &Operator) -> Operator {
    let mut op = op.clone();
    op.country = op.country.trim().to_ascii_uppercase();
    op.parent_country = op.parent_country.trim().to_ascii_uppercase();
    if op.name.is_empty() {
        v.add("operator.name", "must not be empty");
    }
    v.text("operator.name", &op.name, 256);
    v.country("operator.country", &op.country);
    if !op.parent_country.is_empty() {
        v.country("operator.parent_country", &op.parent_country);
    }
    v.percent(
        "operator.largest_non_eu_holder_percent",
        op.largest_non_eu_holder_percent,
    );
    v.percent("operator.total_non_eu_percent", op.total_non_eu_percent);
    if op.largest_non_eu_holder_percent > op.total_non_eu_percent {
        v.add(
            "operator.largest_non_eu_holder_percent",
            "cannot exceed operator.total_non_eu_percent",
        );
    }
    op
}

#[tonic::async_trait]
impl InfrastructureService for Api {
    async fn create_datacenter(&self, r: Request<CreateDatacenterRequest>) -> R<Datacenter> {
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("name", &r.name);
        let country = r.country.trim().to_ascii_uppercase();
        v.country("country", &country);
        let op = match &r.operator {
            Some(op) => check_operator(&mut v, op),
            None => {
                v.add("operator", "is required (name and country at least)");
                Operator::default()
            }
        };
        v.labels("certifications", &r.certifications);
        v.request_id("request_id", &r.request_id);
        check(v)?;
        let dc = Datacenter {
            meta: meta(&r.name, "", &r.request_id),
            country,
            jurisdictions: vec![],
            operator: Some(op),
            certifications: r.certifications,
            status: DatacenterStatus::Active as i32,
        };
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::CreateDatacenter(dc)))
            .await?;
        reply!(rep, Datacenter)
    }

    async fn update_datacenter(&self, r: Request<UpdateDatacenterRequest>) -> R<Datacenter> {
        let who = super::caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        let country = r.country.as_ref().map(|c| c.trim().to_ascii_uppercase());
        if let Some(c) = &country {
            v.country("country", c);
        }
        let op = r.operator.as_ref().map(|o| check_operator(&mut v, o));
        if r.set_certifications {
            v.labels("certifications", &r.certifications);
        }
        let status = DatacenterStatus::try_from(r.status).ok();
        v.enum_value("status", status.is_some(), true, r.status);
        check(v)?;
        let dc: Datacenter = self.read(false, |s| find(s, &who, &r.r#ref)).await??;
        let cmd = Command::UpdateDatacenter {
            id: dc.meta().id.clone(),
            country,
            operator: op,
            certifications: r.set_certifications.then_some(r.certifications),
            status: status.filter(|s| *s != DatacenterStatus::Unspecified),
            expected_generation: r.expected_generation,
        };
        let rep = self.node.submit(Proposal::Cmd(cmd)).await?;
        reply!(rep, Datacenter)
    }

    async fn get_datacenter(&self, r: Request<GetRequest>) -> R<Datacenter> {
        self.get(r).await
    }

    async fn list_datacenters(
        &self,
        r: Request<ListDatacentersRequest>,
    ) -> R<ListDatacentersResponse> {
        let r = r.into_inner();
        let mut v = Violations::new();
        let country = r.country.trim().to_ascii_uppercase();
        let jur = r.jurisdiction.trim().to_ascii_uppercase();
        if !country.is_empty() {
            v.country("country", &country);
        }
        if !jur.is_empty() {
            v.jurisdictions("jurisdiction", std::slice::from_ref(&jur));
        }
        check(v)?;
        let page = super::paging::Page::new(r.page_size, &r.page_token)?;
        let (datacenters, next_page_token) = self
            .read(stale(&r.read), |s| {
                page.take(
                    s.datacenters
                        .values()
                        .filter(|d| country.is_empty() || d.country == country)
                        .filter(|d| jur.is_empty() || d.jurisdictions.contains(&jur)),
                )
            })
            .await?;
        Ok(Response::new(ListDatacentersResponse {
            datacenters,
            next_page_token,
        }))
    }

    async fn delete_datacenter(&self, r: Request<DeleteRequest>) -> R<DeleteResponse> {
        self.delete::<Datacenter>(r, |id| Command::DeleteDatacenter { id })
            .await
    }

    async fn register_host(&self, r: Request<RegisterHostRequest>) -> R<Host> {
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("name", &r.name);
        v.reference("datacenter", &r.datacenter);
        let cap = r.capacity.unwrap_or_default();
        v.positive("capacity.vcpus", cap.vcpus, val::MAX_VCPUS);
        v.positive("capacity.memory_mib", cap.memory_mib, val::MAX_MEMORY_MIB);
        v.positive("capacity.disk_gib", cap.disk_gib, val::MAX_DISK_GIB);
        let mut ratios = r.ratios.unwrap_or(AllocationRatios {
            cpu: 0.0,
            memory: 0.0,
            disk: 0.0,
        });
        v.ratio("ratios.cpu", ratios.cpu);
        v.ratio("ratios.memory", ratios.memory);
        v.ratio("ratios.disk", ratios.disk);
        v.request_id("request_id", &r.request_id);
        check(v)?;
        for (x, d) in [
            (&mut ratios.cpu, DEFAULT_RATIOS.cpu),
            (&mut ratios.memory, DEFAULT_RATIOS.memory),
            (&mut ratios.disk, DEFAULT_RATIOS.disk),
        ] {
            if *x == 0.0 {
                *x = d;
            }
        }
        let dc: Datacenter = self
            .read(false, |s| s.find::<Datacenter>("", &r.datacenter).cloned())
            .await?
            .ok_or_else(|| {
                ApiError::missing(
                    "datacenter",
                    format!("datacenter {:?} not found", r.datacenter),
                )
            })?;
        let host = Host {
            meta: meta(&r.name, "", &r.request_id),
            datacenter_id: dc.meta().id.clone(),
            state: HostState::Up as i32,
            capacity: Some(cap),
            ratios: Some(ratios),
            used: None,
            simulated: r.simulated,
            ..Default::default()
        };
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::RegisterHost(host)))
            .await?;
        reply!(rep, Host)
    }

    async fn set_host_state(&self, r: Request<SetHostStateRequest>) -> R<Host> {
        let who = super::caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        let state = HostState::try_from(r.state).ok();
        v.enum_value("state", state.is_some(), false, r.state);
        check(v)?;
        let state = state.unwrap_or(HostState::Up);
        let host: Host = self.read(false, |s| find(s, &who, &r.r#ref)).await??;
        let cmd = Command::SetHostState {
            id: host.meta().id.clone(),
            state,
        };
        let rep = self.node.submit(Proposal::Cmd(cmd)).await?;
        reply!(rep, Host)
    }

    async fn get_host(&self, r: Request<GetRequest>) -> R<Host> {
        self.get(r).await
    }

    async fn list_hosts(&self, r: Request<ListHostsRequest>) -> R<ListHostsResponse> {
        let r = r.into_inner();
        let page = super::paging::Page::new(r.page_size, &r.page_token)?;
        let (mut hosts, next_page_token) = self
            .read(stale(&r.read), |s| {
                let dc = if r.datacenter.is_empty() {
                    None
                } else {
                    Some(
                        s.find::<Datacenter>("", &r.datacenter)
                            .map(|d| d.meta().id.clone())
                            .ok_or_else(|| {
                                ApiError::missing(
                                    "datacenter",
                                    format!("datacenter {:?} not found", r.datacenter),
                                )
                            })?,
                    )
                };
                Ok::<_, ApiError>(
                    page.take(
                        s.hosts
                            .values()
                            .filter(|h| dc.as_ref().is_none_or(|d| h.datacenter_id == *d)),
                    ),
                )
            })
            .await??;
        hosts.iter_mut().for_each(Resource::redact);
        Ok(Response::new(ListHostsResponse {
            hosts,
            next_page_token,
        }))
    }

    async fn delete_host(&self, r: Request<DeleteRequest>) -> R<DeleteResponse> {
        self.delete::<Host>(r, |id| Command::DeleteHost { id })
            .await
    }

    async fn declare_host_lost(&self, r: Request<DeclareHostLostRequest>) -> R<Host> {
        let who = super::caller(&r)?;
        let r = r.into_inner();
        let h: Host = self.read(false, |s| find(s, &who, &r.r#ref)).await??;
        let id = h.meta().id.clone();
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::DeclareHostLost { id }))
            .await?;
        reply!(rep, Host)
    }

    async fn create_join_token(
        &self,
        r: Request<CreateJoinTokenRequest>,
    ) -> R<CreateJoinTokenResponse> {
        let r = r.into_inner();
        let mut v = Violations::new();
        v.reference("datacenter", &r.datacenter);
        if r.ttl_seconds > MAX_JOIN_TTL_SECS {
            v.add(
                "ttl_seconds",
                format!("must be at most {MAX_JOIN_TTL_SECS} (7 days)"),
            );
        }
        check(v)?;
        let ttl = if r.ttl_seconds == 0 {
            3600
        } else {
            r.ttl_seconds
        };
        let dc: Datacenter = self
            .read(false, |s| s.find::<Datacenter>("", &r.datacenter).cloned())
            .await?
            .ok_or_else(|| {
                ApiError::missing(
                    "datacenter",
                    format!("datacenter {:?} not found", r.datacenter),
                )
            })?;
        let (token, secret) =
            crate::agents::session::new_join_token(&dc.meta().id, ttl, self.node.tls.as_ref());
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::CreateJoinToken(token)))
            .await?;
        let andromede_store::command::Reply::JoinToken(t) = rep else {
            return Err(Status::internal("unexpected reply to a join token"));
        };
        Ok(Response::new(CreateJoinTokenResponse {
            join_token: Some({
                let mut t = t;
                t.redact();
                t
            }),
            token: secret,
        }))
    }

    async fn list_join_tokens(
        &self,
        r: Request<ListJoinTokensRequest>,
    ) -> R<ListJoinTokensResponse> {
        let r = r.into_inner();
        let page = super::paging::Page::new(r.page_size, &r.page_token)?;
        let (mut join_tokens, next_page_token) = self
            .read(stale(&r.read), |s| page.take(s.join_tokens.values()))
            .await?;
        join_tokens.iter_mut().for_each(Resource::redact);
        Ok(Response::new(ListJoinTokensResponse {
            join_tokens,
            next_page_token,
        }))
    }

    async fn create_flavor(&self, r: Request<CreateFlavorRequest>) -> R<Flavor> {
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("name", &r.name);
        v.positive("vcpus", r.vcpus, val::MAX_VCPUS);
        v.positive("memory_mib", r.memory_mib, val::MAX_MEMORY_MIB);
        v.positive("disk_gib", r.disk_gib, val::MAX_DISK_GIB);
        v.request_id("request_id", &r.request_id);
        check(v)?;
        let f = Flavor {
            meta: meta(&r.name, "", &r.request_id),
            vcpus: r.vcpus,
            memory_mib: r.memory_mib,
            disk_gib: r.disk_gib,
        };
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::CreateFlavor(f)))
            .await?;
        reply!(rep, Flavor)
    }

    async fn get_flavor(&self, r: Request<GetRequest>) -> R<Flavor> {
        self.get(r).await
    }

    async fn list_flavors(&self, r: Request<ListRequest>) -> R<ListFlavorsResponse> {
        let r = r.into_inner();
        let page = super::paging::Page::new(r.page_size, &r.page_token)?;
        let (flavors, next_page_token) = self
            .read(stale(&r.read), |s| page.take(s.flavors.values()))
            .await?;
        Ok(Response::new(ListFlavorsResponse {
            flavors,
            next_page_token,
        }))
    }

    async fn delete_flavor(&self, r: Request<DeleteRequest>) -> R<DeleteResponse> {
        self.delete::<Flavor>(r, |id| Command::DeleteFlavor { id })
            .await
    }

    async fn create_image(&self, r: Request<CreateImageRequest>) -> R<Image> {
        let who = super::caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("name", &r.name);
        v.image_source("source", &r.source);
        let format = if r.format.is_empty() {
            "qcow2".to_string()
        } else {
            r.format.clone()
        };
        if !["qcow2", "raw"].contains(&format.as_str()) {
            v.add("format", "must be qcow2 or raw");
        }
        if !is_sha256(&r.checksum_sha256) {
            v.add("checksum_sha256", "must be 64 hexadecimal characters");
        }
        v.request_id("request_id", &r.request_id);
        for (field, f) in [("kernel", &r.kernel), ("initrd", &r.initrd)] {
            if let Some(f) = f {
                v.image_source(&format!("{field}.source"), &f.source);
                if !is_sha256(&f.checksum_sha256) {
                    v.add(
                        format!("{field}.checksum_sha256"),
                        "must be 64 hexadecimal characters",
                    );
                }
            }
        }
        if r.initrd.is_some() && r.kernel.is_none() {
            v.add("initrd", "needs a kernel");
        }
        v.text("cmdline", &r.cmdline, 2048);
        if who.confined_to().is_some() {
            // A file source is read on the host: only the cloud may point at host files.
            let sources = [
                Some(&r.source),
                r.kernel.as_ref().map(|k| &k.source),
                r.initrd.as_ref().map(|k| &k.source),
            ];
            for (field, src) in ["source", "kernel.source", "initrd.source"]
                .iter()
                .zip(sources)
            {
                if src.is_some_and(|s| !(s.starts_with("https://") || s.starts_with("http://"))) {
                    v.add(
                        *field,
                        "a project image must come from an http:// or https:// URL",
                    );
                }
            }
        }
        check(v)?;
        // A confined caller's image belongs to its project; the cloud's are public unless it
        // names a project.
        let project = if r.project.is_empty() && who.confined_to().is_none() {
            String::new()
        } else {
            self.read(false, |s| super::project_id(s, &who, "project", &r.project))
                .await??
        };
        let img = Image {
            meta: meta(&r.name, &project, &r.request_id),
            format,
            source: r.source,
            checksum_sha256: r.checksum_sha256.to_ascii_lowercase(),
            min_disk_gib: r.min_disk_gib,
            kernel: r.kernel.map(lower_sum),
            initrd: r.initrd.map(lower_sum),
            cmdline: r.cmdline,
        };
        let rep = self
            .node
            .submit(Proposal::Cmd(Command::CreateImage(img)))
            .await?;
        reply!(rep, Image)
    }

    async fn get_image(&self, r: Request<GetRequest>) -> R<Image> {
        self.get(r).await
    }

    async fn list_images(&self, r: Request<ListRequest>) -> R<ListImagesResponse> {
        let who = super::caller(&r)?;
        let r = r.into_inner();
        let page = super::paging::Page::new(r.page_size, &r.page_token)?;
        let (images, next_page_token) = self
            .read(stale(&r.read), |s| {
                let p = if r.project.is_empty() {
                    None
                } else {
                    Some(super::project_id(s, &who, "project", &r.project)?)
                };
                // Images of no project are shared by all.
                let visible = |i: &&Image| {
                    let owner = &i.meta().project_id;
                    super::visible(&who, *i)
                        && p.as_ref().is_none_or(|p| owner.is_empty() || owner == p)
                };
                Ok::<_, ApiError>(page.take(s.images.values().filter(visible)))
            })
            .await??;
        Ok(Response::new(ListImagesResponse {
            images,
            next_page_token,
        }))
    }

    async fn delete_image(&self, r: Request<DeleteRequest>) -> R<DeleteResponse> {
        let who = super::caller(&r)?;
        let found: Image = self
            .read(false, |s| find(s, &who, &r.get_ref().r#ref))
            .await??;
        if found.meta().project_id.is_empty() && !who.is_cloud_admin() {
            return Err(Status::permission_denied(format!(
                "image {} is public: only a cloud-admin token deletes it",
                found.meta().name
            )));
        }
        self.delete::<Image>(r, |id| Command::DeleteImage { id })
            .await
    }
}
