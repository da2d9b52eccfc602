// Package artifact builds, stores and moves k2 cluster artifacts: OCI
// manifests (artifactType [ArtifactType]) whose config blob is the resolved
// cluster spec ([Config]) and whose layers are the K8sfile's ADD, INSTALL and
// APP instructions, after the layers inherited from FROM.
//
// # Layout of an artifact
//
//	manifest  application/vnd.oci.image.manifest.v1+json, artifactType application/vnd.k2.cluster.v1,
//	          annotations = LABELs + org.opencontainers.image.created=1970-01-01T00:00:00Z
//	config    application/vnd.k2.cluster.config.v1+json  – [Config], version "k2.dev/cluster/v1"
//	layers    application/vnd.k2.layer.manifests.v1.tar+gzip – manifests (ADD of a dir or file)
//	          application/vnd.k2.layer.chart.v1.tar+gzip     – a Helm chart archive (ADD of a chart, INSTALL)
//	          application/vnd.k2.layer.app.v1+yaml           – one App object (APP)
//
// Config.Layers[i] describes Manifest.Layers[i]: name, kind, digest, where it
// came from (From is the base reference for inherited layers), the chart's
// release/namespace/values/set, and every object the layer creates
// (apiVersion/kind/namespace/name, as rendered at build with the chart's
// default values plus the given ones). Builds are reproducible: sorted tar
// entries, fixed times, modes 0644/0755, uid/gid 0, no gzip name or time,
// a fixed created annotation, and JSON with a fixed field order.
//
// # Building
//
// [Build] turns a parsed [k8sfile.File] into an artifact in a [Store] (an OCI
// image layout at $K2_HOME/store, see [OpenStore] and [StoreDir]). FROM is
// scratch, a built-in base ([BuiltinBases], generated from embedded content
// by [EnsureBuiltin], digest stable across builds and machines), or a
// reference in the store or a registry (pulled when missing); its digest is
// recorded in Config.Base. INSTALL charts are vendored at build time from
// oci:// registries (Helm's registry client), <repo-url>#<chart> and
// helm/<alias>/<chart> ([Repos]). Every object is checked: an alpha or beta
// apiVersion fails the build with a [*BetaError] unless AllowBeta.
//
// # Reading an artifact (for the deploy engine)
//
//	s, _ := artifact.OpenStore(ctx, artifact.StoreDir(home))
//	a, err := artifact.Open(ctx, s, "localhost:5000/shop@sha256:…", true, artifact.RemoteOptions{}) // pulls if missing
//	a.Descriptor.Digest            // the artifact's identity
//	a.Config.Kubernetes, a.Config.Args, a.Config.Machines, a.Config.Apps
//	for _, l := range a.Config.Layers {
//		switch l.Kind {
//		case artifact.KindManifests, artifact.KindApp:
//			files, _ := a.Files(ctx, l.Name) // []File{Name, Data}: YAML/JSON documents; an App is "app.yaml"
//		case artifact.KindChart:
//			ch, how, _ := a.Chart(ctx, l.Name) // *chart.Chart and ChartSpec{Release, Namespace, Values, Set}
//		}
//	}
//
// [OpenRemote] reads an artifact straight from a registry without storing it.
// ${ARG} templates in App fields, machine pools and chart set values are kept
// as written; resolve them per environment with k8sfile.Expand.
//
// # Moving artifacts
//
// [Push] and [Pull] copy between the store and any OCI registry with oras-go
// (plain HTTP for localhost and loopback, or RemoteOptions.Insecure; TLS and
// basic/bearer auth from docker's config.json). [Save] and [Load] write and
// read OCI image-layout tarballs for air-gapped sites.
//
// Errors a user can act on are *usererr.Error: KindInvalid (exit 3) for bad
// input, with the K8sfile position; KindRegistry (exit 5) for registry and
// network failures.
//
// Writers of the store take a flock(2) on <store>.lock (see lock.go), so
// several k2 processes can share a store; readers take no lock.
package artifact
