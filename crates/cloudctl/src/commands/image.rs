//! `cloudctl image …`: register, get, list and delete images.

use andromede_api::v1::{CreateImageRequest, DeleteRequest};
use anyhow::Result;

use super::{get_req, list_req, names, print_deleted, rref, Lookup};
use crate::cli::ImageCmd;
use crate::client::{request_id, Ctx};
use crate::output::{print_list, print_one};

pub async fn run(ctx: &Ctx, cmd: ImageCmd) -> Result<()> {
    match cmd {
        ImageCmd::Create {
            name,
            source,
            checksum_sha256,
            format,
            min_disk_gib,
            project,
            request_id: rid,
        } => {
            let req = CreateImageRequest {
                name,
                format,
                source,
                checksum_sha256,
                min_disk_gib,
                project: project.unwrap_or_default(),
                request_id: request_id(rid),
                ..Default::default()
            };
            let image = ctx
                .create_with_retry("image", || {
                    let mut c = ctx.infra();
                    let req = req.clone();
                    async move { c.create_image(req).await }
                })
                .await?;
            let names = names(ctx, &[Lookup::Projects]).await;
            print_one(ctx.output, &image, &names)
        }
        ImageCmd::Get(r) => {
            let image = ctx
                .call(
                    ctx.infra()
                        .get_image(get_req(ctx, &r.reference, r.project.as_deref())),
                )
                .await?;
            let names = names(ctx, &[Lookup::Projects]).await;
            print_one(ctx.output, &image, &names)
        }
        ImageCmd::List { project } => {
            let list = ctx
                .call(ctx.infra().list_images(list_req(ctx, project)))
                .await?;
            let names = names(ctx, &[Lookup::Projects]).await;
            print_list(ctx.output, &list.images, &names)
        }
        ImageCmd::Delete(r) => {
            let req = DeleteRequest {
                r#ref: rref(&r.reference, r.project.as_deref()),
            };
            let resp = ctx.call(ctx.infra().delete_image(req)).await?;
            print_deleted(ctx, "image", &r.reference, &resp)
        }
    }
}
