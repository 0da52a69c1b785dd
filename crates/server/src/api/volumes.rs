//! VolumeService: host-local volumes, placed under the project's policy like instances.

use super::compute::{check_within_policy, resolve_constraints};
use super::paging::Page;
use super::{
    caller, check, find, find_in, list_in_project, meta, project_id, project_ref, stale, Api,
};
use crate::error::ApiError;
use crate::node::Proposal;
use crate::reply;
use andromede_api::v1::volume_service_server::VolumeService;
use andromede_api::v1::*;
use andromede_auth::Principal;
use andromede_model::validate::{self as val, Violations};
use andromede_store::command::VolumeOp;
use andromede_store::resource::Resource;
use andromede_store::Command;
use tonic::{Request, Response, Status};

type R<T> = Result<Response<T>, Status>;

impl Api {
    async fn volume_op(
        &self,
        who: &Principal,
        vref: &Option<ResourceRef>,
        op: VolumeOp,
        instance: &str,
    ) -> R<Volume> {
        let (vol, inst_id) = self
            .read(false, |s| -> Result<(Volume, String), ApiError> {
                let vol: Volume = find(s, who, vref)?;
                let inst_id = if instance.is_empty() {
                    String::new()
                } else {
                    find_in::<Instance>(s, who, &vol.meta().project_id, instance)
                        .map(|i| i.meta().id.clone())
                        .ok_or_else(|| {
                            ApiError::missing(
                                "instance",
                                format!("instance {instance:?} not found"),
                            )
                        })?
                };
                Ok((vol, inst_id))
            })
            .await??;
        let cmd = Command::VolumeOp {
            id: vol.meta().id.clone(),
            op,
            instance_id: inst_id,
        };
        let rep = self.node.submit(Proposal::Cmd(cmd)).await?;
        reply!(rep, Volume)
    }
}

#[tonic::async_trait]
impl VolumeService for Api {
    async fn create_volume(&self, r: Request<CreateVolumeRequest>) -> R<Volume> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        v.name("name", &r.name);
        project_ref(&mut v, &who, "project", &r.project);
        v.positive("size_gib", r.size_gib, val::MAX_DISK_GIB);
        v.optional_reference("near_instance", &r.near_instance);
        v.request_id("request_id", &r.request_id);
        check(v)?;
        self.node.read_barrier(false).await?;
        let (vol, near) = self.node.read(|s| -> Result<(Volume, String), ApiError> {
            let mut v = Violations::new();
            let constraints = resolve_constraints(s, &mut v, &r.constraints);
            let pid = project_id(s, &who, "project", &r.project)?;
            let near = if r.near_instance.is_empty() {
                String::new()
            } else {
                match find_in::<Instance>(s, &who, &pid, &r.near_instance) {
                    Some(i) => i.meta().id.clone(),
                    None => {
                        v.add(
                            "near_instance",
                            format!("instance {:?} does not exist", r.near_instance),
                        );
                        String::new()
                    }
                }
            };
            check(v)?;
            let project = s
                .projects
                .get(&pid)
                .ok_or_else(|| ApiError::NotFound(format!("project {pid} not found")))?;
            check_within_policy(s, project, &constraints)?;
            Ok((
                Volume {
                    meta: meta(&r.name, &pid, &r.request_id),
                    size_gib: r.size_gib,
                    state: VolumeState::Creating as i32,
                    constraints: Some(constraints),
                    ..Default::default()
                },
                near,
            ))
        })?;
        let rep = self
            .node
            .submit(Proposal::PlaceVolume {
                volume: vol,
                near_instance: near,
            })
            .await?;
        reply!(rep, Volume)
    }

    async fn get_volume(&self, r: Request<GetRequest>) -> R<Volume> {
        self.get(r).await
    }

    async fn list_volumes(&self, r: Request<ListRequest>) -> R<ListVolumesResponse> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let page = Page::new(r.page_size, &r.page_token)?;
        let (volumes, next_page_token) = self
            .read(stale(&r.read), |s| {
                list_in_project::<Volume>(s, &who, &r.project, &page)
            })
            .await??;
        Ok(Response::new(ListVolumesResponse {
            volumes,
            next_page_token,
        }))
    }

    async fn delete_volume(&self, r: Request<DeleteRequest>) -> R<Volume> {
        let who = caller(&r)?;
        let r = r.into_inner();
        self.volume_op(&who, &r.r#ref, VolumeOp::Delete, "").await
    }

    async fn attach_volume(&self, r: Request<AttachVolumeRequest>) -> R<Volume> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        v.reference("instance", &r.instance);
        check(v)?;
        self.volume_op(&who, &r.volume, VolumeOp::Attach, &r.instance)
            .await
    }

    async fn detach_volume(&self, r: Request<DetachVolumeRequest>) -> R<Volume> {
        let who = caller(&r)?;
        let r = r.into_inner();
        self.volume_op(&who, &r.volume, VolumeOp::Detach, "").await
    }

    async fn extend_volume(&self, r: Request<ExtendVolumeRequest>) -> R<Volume> {
        let who = caller(&r)?;
        let r = r.into_inner();
        let mut v = Violations::new();
        v.positive("size_gib", r.size_gib, val::MAX_DISK_GIB);
        check(v)?;
        let vol: Volume = self.read(false, |s| find(s, &who, &r.volume)).await??;
        let cmd = Command::ExtendVolume {
            id: vol.meta().id.clone(),
            size_gib: r.size_gib,
        };
        let rep = self.node.submit(Proposal::Cmd(cmd)).await?;
        reply!(rep, Volume)
    }
}
