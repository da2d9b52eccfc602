package app_test

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"

	"k2.dev/k2/provision/app"
)

// TestCRDValid runs the API server's own CRD validation (which includes the
// structural-schema check that `kubectl explain` relies on).
func TestCRDValid(t *testing.T) {
	t.Parallel()
	crd, err := app.CRD()
	if err != nil {
		t.Fatal(err)
	}
	apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(crd)
	var internal apiextensions.CustomResourceDefinition
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(crd, &internal, nil); err != nil {
		t.Fatal(err)
	}
	if errs := validation.ValidateCustomResourceDefinition(context.Background(), &internal); len(errs) > 0 {
		t.Fatalf("the App CRD is invalid:\n%v", errs.ToAggregate())
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != app.Version {
		t.Errorf("versions = %v, want only %s", crd.Spec.Versions, app.Version)
	}
	var cols []string
	for _, c := range crd.Spec.Versions[0].AdditionalPrinterColumns {
		cols = append(cols, c.Name)
	}
	if diff := cmp.Diff([]string{"Ready", "Replicas", "URL", "Image", "Age", "Error"}, cols); diff != "" {
		t.Errorf("printer columns (-want +got):\n%s", diff)
	}
}

// TestCRDSchemaMatchesTypes checks that the schema and the Go types name the
// same fields, and that every field has a description for kubectl explain.
func TestCRDSchemaMatchesTypes(t *testing.T) {
	t.Parallel()
	crd, err := app.CRD()
	if err != nil {
		t.Fatal(err)
	}
	root := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	for _, part := range []struct {
		name string
		typ  reflect.Type
	}{{"spec", reflect.TypeOf(app.Spec{})}, {"status", reflect.TypeOf(app.Status{})}} {
		s := root.Properties[part.name]
		compare(t, part.name, &s, part.typ)
	}
}

var leafTypes = map[string]bool{"Time": true, "IntOrString": true, "Port": true, "Condition": true}

func compare(t *testing.T, path string, s *apiextensionsv1.JSONSchemaProps, typ reflect.Type) {
	t.Helper()
	if s.Description == "" {
		t.Errorf("%s: no description", path)
	}
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
		if s.Items != nil && s.Items.Schema != nil && typ.Kind() == reflect.Struct && !leafTypes[typ.Name()] {
			s = s.Items.Schema
		}
	}
	if typ.Kind() != reflect.Struct || leafTypes[typ.Name()] {
		return
	}
	var goFields, schemaFields []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		goFields = append(goFields, name)
		if p, ok := s.Properties[name]; ok {
			compare(t, path+"."+name, &p, f.Type)
		}
	}
	for name := range s.Properties {
		schemaFields = append(schemaFields, name)
	}
	sort.Strings(goFields)
	sort.Strings(schemaFields)
	if diff := cmp.Diff(goFields, schemaFields); diff != "" {
		t.Errorf("%s: Go fields vs schema properties (-go +schema):\n%s", path, diff)
	}
}
