package artifact

// Media types of a k2 cluster artifact. The manifest is a plain OCI image
// manifest (schema 2) whose artifactType says it is a k2 cluster; the config
// blob is the resolved cluster spec ([Config]) and every layer has a media
// type telling the deploy engine how to apply it.
const (
	// ArtifactType is the manifest's artifactType.
	ArtifactType = "application/vnd.k2.cluster.v1"
	// ConfigMediaType is the media type of the config blob, a JSON [Config].
	ConfigMediaType = "application/vnd.k2.cluster.config.v1+json"
	// ManifestsMediaType is a gzipped tar of Kubernetes manifests (YAML or
	// JSON files, multi-document allowed), paths relative to the ADD source.
	ManifestsMediaType = "application/vnd.k2.layer.manifests.v1.tar+gzip"
	// ChartMediaType is a Helm chart archive (.tgz), exactly as Helm packages
	// it: one top-level directory named after the chart.
	ChartMediaType = "application/vnd.k2.layer.chart.v1.tar+gzip"
	// AppMediaType is one k2 App object (apiVersion k2.dev/v1, kind App) as
	// YAML. Its fields may hold ${ARG} templates resolved at deploy time.
	AppMediaType = "application/vnd.k2.layer.app.v1+yaml"
)

// Layer kinds, as recorded in [LayerSpec.Kind].
const (
	KindManifests = "manifests"
	KindChart     = "chart"
	KindApp       = "app"
)

// Annotation keys k2 sets on layer descriptors and manifests.
const (
	// AnnotationTitle is the standard OCI title: the layer's name.
	AnnotationTitle = "org.opencontainers.image.title"
	// AnnotationCreated is the standard creation time. k2 always sets it to
	// [FixedCreated] so that builds are reproducible.
	AnnotationCreated = "org.opencontainers.image.created"
	// AnnotationLayerKind is the layer kind (manifests, chart, app).
	AnnotationLayerKind = "dev.k2.layer.kind"
	// AnnotationRefName is the OCI image-layout tag annotation.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// FixedCreated is the creation time recorded in every manifest.
	FixedCreated = "1970-01-01T00:00:00Z"
)

func mediaTypeOf(kind string) string {
	switch kind {
	case KindManifests:
		return ManifestsMediaType
	case KindChart:
		return ChartMediaType
	case KindApp:
		return AppMediaType
	}
	return ""
}
