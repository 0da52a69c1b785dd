//! `cloudctl image …`: register (optionally for direct kernel boot), get, list and delete images.

use andromede_api::v1::{CreateImageRequest, DeleteRequest, ImageFile};
use anyhow::Result;

use super::{get_req, list_req, names, print_deleted, rref, Lookup};
use crate::cli::{ImageCmd, ImageCreate};
use crate::client::{request_id, Ctx};
use crate::output::{print_list, print_one};

pub async fn run(ctx: &Ctx, cmd: ImageCmd) -> Result<()> {
    match cmd {
        ImageCmd::Create(a) => create(ctx, *a).await,
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
                .list_all(list_req(ctx, project), |r| {
                    let mut c = ctx.infra();
                    async move { c.list_images(r).await }
                })
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

/// A direct-boot file, present only when its source was given.
fn image_file(source: Option<String>, checksum: Option<String>) -> Option<ImageFile> {
    source.map(|source| ImageFile {
        source,
        checksum_sha256: checksum.unwrap_or_default(),
    })
}

async fn create(ctx: &Ctx, a: ImageCreate) -> Result<()> {
    let req = CreateImageRequest {
        name: a.name,
        format: a.format,
        source: a.source,
        checksum_sha256: a.checksum_sha256,
        min_disk_gib: a.min_disk_gib,
        project: a.project.unwrap_or_default(),
        request_id: request_id(a.request_id),
        kernel: image_file(a.kernel, a.kernel_sha256),
        initrd: image_file(a.initrd, a.initrd_sha256),
        cmdline: a.cmdline.unwrap_or_default(),
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
