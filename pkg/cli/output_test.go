package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
)

// WriteDocument must print exactly what json.MarshalIndent prints: scripts diff and hash it.
func TestWriteDocumentJSONAsMarshalIndent(t *testing.T) {
	type inner struct {
		Note  string            `json:"note,omitempty"`
		Types map[string]string `json:"types,omitempty"`
		List  []int             `json:"list"`
	}
	docs := []any{
		map[string]any{},
		[]any{},
		"plain",
		42.5,
		nil,
		struct {
			TypeMeta
			Empty   []string          `json:"empty"`
			None    map[string]string `json:"none"`
			Objects []inner           `json:"objects"`
			Tricky  []string          `json:"tricky"`
		}{
			TypeMeta: NewTypeMeta("MeshStatus"),
			Empty:    []string{},
			None:     map[string]string{},
			Objects:  []inner{{Note: "a", Types: map[string]string{"CDS": "SYNCED", "EDS": "STALE"}, List: []int{1, 2}}, {List: []int{}}},
			Tricky:   []string{`"quoted" {braces} [brackets], colon: done`, `back\slash\`, "tab\tnewline\n<html>&", "ünïcode \u2028", `\"`, ""},
		},
	}
	for _, doc := range docs {
		var got bytes.Buffer
		if err := WriteDocument(&got, OutputJSON, doc); err != nil {
			t.Fatal(err)
		}
		want, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != string(want)+"\n" {
			t.Errorf("printed\n%s\nwant\n%s", got.String(), want)
		}
	}
}

func FuzzWriteIndented(f *testing.F) {
	for _, seed := range []string{`{}`, `[]`, `{"a":[1,{"b":"c\"}"}],"d":{}}`, `[[],[{}],"\\",null,true,-1.5e3]`, ` { "a" : [ 1 , 2 ] } `} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		var compact bytes.Buffer
		if json.Compact(&compact, src) != nil {
			return
		}
		src = compact.Bytes()
		var want bytes.Buffer
		if err := json.Indent(&want, src, "", "  "); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		w := bufio.NewWriter(&got)
		writeIndented(w, src)
		w.Flush()
		if got.String() != want.String() {
			t.Errorf("%q: printed\n%s\nwant\n%s", src, got.String(), want.String())
		}
	})
}
