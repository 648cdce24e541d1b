package lang

import (
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// TestDocs_Reference keeps docs/hcl.md true to the code: every function,
// block and attribute lang knows is mentioned there.
func TestDocs_Reference(t *testing.T) {
	b, err := os.ReadFile("../docs/hcl.md")
	if err != nil {
		t.Skipf("docs/hcl.md not readable: %v", err)
	}
	doc := string(b)
	for _, name := range FunctionNames() {
		if !strings.Contains(doc, "`"+name+"`") && !strings.Contains(doc, "`"+name+"(") && !strings.Contains(doc, ", `"+name) {
			t.Errorf("function %s is not documented", name)
		}
	}
	schemas := []*hcl.BodySchema{fileSchema, clusterSchema, objectivesSchema, providerSchema, variableSchema,
		roleSchema, placementSchema, healthSchema, fencingSchema, vipSchema, dataSchema, backupSchema, resourceMetaSchema}
	for _, s := range schemas {
		for _, a := range s.Attributes {
			if !strings.Contains(doc, "| `"+a.Name+"` |") {
				t.Errorf("attribute %s has no row in a table", a.Name)
			}
		}
		for _, bl := range s.Blocks {
			if !strings.Contains(doc, "## "+bl.Type) && !strings.Contains(doc, "### "+bl.Type) {
				t.Errorf("block %s has no section", bl.Type)
			}
		}
	}
	for _, list := range [][]string{ProviderTypes, HealthTypes, FencingMethods, FailbackModes, ReplicationMode} {
		for _, v := range list {
			if !strings.Contains(doc, "`"+v+"`") {
				t.Errorf("value %q is not documented", v)
			}
		}
	}
}
