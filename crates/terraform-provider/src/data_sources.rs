//! Data sources: `andromede_datacenters` (filtered by country or jurisdiction),
//! `andromede_flavor` and `andromede_image` (looked up by name or id).

use std::collections::HashMap;

use andromede_api::v1::*;
use andromede_client::paging::all_pages;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{DataSource, Diagnostics};

use crate::api::call;
use crate::common::*;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatacenterItem {
    pub id: Value<String>,
    pub name: Value<String>,
    pub country: Value<String>,
    pub jurisdictions: Value<Vec<String>>,
    pub certifications: Value<Vec<String>>,
    pub operator_name: Value<String>,
    pub operator_country: Value<String>,
    pub status: Value<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatacentersState {
    pub country: Value<String>,
    pub jurisdiction: Value<String>,
    pub ids: Value<Vec<String>>,
    pub names: Value<Vec<String>>,
    pub datacenters: Value<Vec<DatacenterItem>>,
}

pub struct DatacentersSource(pub Shared);

#[async_trait]
impl DataSource for DatacentersSource {
    type State<'a> = DatacentersState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let s = AttributeType::String;
        let item: HashMap<String, AttributeType> = [
            ("id", s.clone()),
            ("name", s.clone()),
            ("country", s.clone()),
            ("jurisdictions", strings()),
            ("certifications", strings()),
            ("operator_name", s.clone()),
            ("operator_country", s.clone()),
            ("status", s.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut b = block("The datacenters, optionally only those in a country or a jurisdiction.");
        let a = &mut b.attributes;
        a.insert(
            "country".into(),
            optional(s.clone(), "Only datacenters in this ISO country."),
        );
        a.insert(
            "jurisdiction".into(),
            optional(
                s,
                "Only datacenters in this jurisdiction (EU, EEA or a country).",
            ),
        );
        a.insert(
            "ids".into(),
            computed(strings(), "Ids of the matching datacenters."),
        );
        a.insert(
            "names".into(),
            computed(strings(), "Names of the matching datacenters."),
        );
        a.insert("datacenters".into(), computed(
                AttributeType::List(Box::new(AttributeType::Object(item))),
                "The matching datacenters: id, name, country, jurisdictions, certifications, operator_name, operator_country, status.",
            ));
        schema(b)
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let api = self.0.api(diags)?;
        let req = ListDatacentersRequest {
            country: text(&config.country),
            jurisdiction: text(&config.jurisdiction),
            ..Default::default()
        };
        let pages = all_pages(req, |r| {
            let mut c = api.infra();
            call(async move { c.list_datacenters(r).await })
        });
        let list = answered(diags, "Listing datacenters", pages.await)?.datacenters;
        let items: Vec<DatacenterItem> = list
            .iter()
            .map(|d| {
                let op = d.operator.clone().unwrap_or_default();
                DatacenterItem {
                    id: known(&d.meta_id()),
                    name: known(&d.meta_name()),
                    country: known(&d.country),
                    jurisdictions: Value::Value(d.jurisdictions.clone()),
                    certifications: Value::Value(d.certifications.clone()),
                    operator_name: known(&op.name),
                    operator_country: known(&op.country),
                    status: known(
                        DatacenterStatus::try_from(d.status)
                            .map(|s| s.as_str_name().trim_start_matches("DATACENTER_STATUS_"))
                            .unwrap_or("UNSPECIFIED"),
                    ),
                }
            })
            .collect();
        let mut out = config;
        out.ids = Value::Value(items.iter().map(|i| text(&i.id)).collect());
        out.names = Value::Value(items.iter().map(|i| text(&i.name)).collect());
        out.datacenters = Value::Value(items);
        Some(out)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlavorLookup {
    pub name: Value<String>,
    pub id: Value<String>,
    pub vcpus: Value<i64>,
    pub memory_mib: Value<i64>,
    pub disk_gib: Value<i64>,
}

pub struct FlavorSource(pub Shared);

#[async_trait]
impl DataSource for FlavorSource {
    type State<'a> = FlavorLookup;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut b = block("A flavor looked up by name or id.");
        let a = &mut b.attributes;
        a.insert(
            "name".into(),
            required(AttributeType::String, "Flavor name or id."),
        );
        a.insert("id".into(), computed(AttributeType::String, "Flavor id."));
        a.insert(
            "vcpus".into(),
            computed(AttributeType::Number, "Virtual CPUs."),
        );
        a.insert(
            "memory_mib".into(),
            computed(AttributeType::Number, "Memory in MiB."),
        );
        a.insert(
            "disk_gib".into(),
            computed(AttributeType::Number, "Root disk in GiB."),
        );
        schema(b)
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let api = self.0.api(diags)?;
        let name = text(&config.name);
        let f = answered(
            diags,
            &format!("Looking up flavor {name}"),
            call(api.infra().get_flavor(get_req(&name, ""))).await,
        )?;
        Some(FlavorLookup {
            name: config.name,
            id: known(&f.meta_id()),
            vcpus: signed(f.vcpus),
            memory_mib: signed(f.memory_mib),
            disk_gib: signed(f.disk_gib),
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageLookup {
    pub name: Value<String>,
    pub project: Value<String>,
    pub id: Value<String>,
    pub format: Value<String>,
    pub source: Value<String>,
    pub checksum_sha256: Value<String>,
    pub min_disk_gib: Value<i64>,
}

pub struct ImageSource(pub Shared);

#[async_trait]
impl DataSource for ImageSource {
    type State<'a> = ImageLookup;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let s = AttributeType::String;
        let mut b = block("An image looked up by name or id.");
        let a = &mut b.attributes;
        a.insert("name".into(), required(s.clone(), "Image name or id."));
        a.insert(
            "project".into(),
            optional(s.clone(), "Project, for a private image looked up by name."),
        );
        a.insert("id".into(), computed(s.clone(), "Image id."));
        a.insert(
            "format".into(),
            computed(s.clone(), "Disk format, e.g. qcow2."),
        );
        a.insert(
            "source".into(),
            computed(s.clone(), "Path or URL the hosts fetch it from."),
        );
        a.insert(
            "checksum_sha256".into(),
            computed(s, "SHA-256 of the image."),
        );
        a.insert(
            "min_disk_gib".into(),
            computed(AttributeType::Number, "Smallest root disk it fits on."),
        );
        schema(b)
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let api = self.0.api(diags)?;
        let name = text(&config.name);
        let i = answered(
            diags,
            &format!("Looking up image {name}"),
            call(
                api.infra()
                    .get_image(get_req(&name, &text(&config.project))),
            )
            .await,
        )?;
        Some(ImageLookup {
            name: config.name,
            project: config.project,
            id: known(&i.meta_id()),
            format: known(&i.format),
            source: known(&i.source),
            checksum_sha256: known(&i.checksum_sha256),
            min_disk_gib: signed(i.min_disk_gib),
        })
    }
}
