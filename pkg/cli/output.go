package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
	"sigs.k8s.io/yaml"
)

// APIVersion is the apiVersion of every document we print with -o json|yaml.
const APIVersion = "istio-upgrade.io/v1alpha1"

// Output formats accepted by -o.
const (
	OutputTable = "table"
	OutputJSON  = "json"
	OutputYAML  = "yaml"
)

// ValidateOutput checks the -o value.
func ValidateOutput(o string) error {
	switch o {
	case OutputTable, OutputJSON, OutputYAML:
		return nil
	}
	return UsageErrorf("unknown output format %q: use one of table, json, yaml", o)
}

// TypeMeta is embedded first in every printed document so it is self-describing and versioned.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// NewTypeMeta returns the TypeMeta of a document kind.
func NewTypeMeta(kind string) TypeMeta { return TypeMeta{APIVersion: APIVersion, Kind: kind} }

// WriteDocument prints doc as JSON or YAML. Under -o json nothing else may reach stdout.
func WriteDocument(w io.Writer, format string, doc any) error {
	switch format {
	case OutputJSON:
		b, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(w, 64<<10)
		writeIndented(bw, b)
		bw.WriteByte('\n')
		return bw.Flush()
	case OutputYAML:
		b, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("WriteDocument: format %q is not a document format", format)
}

// writeIndented writes the compact JSON src (json.Marshal's) as json.MarshalIndent(v, "", "  ") would:
// json.Indent's scanner was half of printing 5,000 proxies, and this needs neither it nor a second copy
// of the output. Strings, most of the output, are copied whole.
func writeIndented(w *bufio.Writer, src []byte) {
	depth := 0
	open := false // just after { or [: an empty one stays {} or []
	indent := []byte("\n")
	newline := func() {
		for len(indent) < 1+2*depth {
			indent = append(indent, "  "...)
		}
		w.Write(indent[:1+2*depth])
	}
	for i := 0; i < len(src); i++ {
		c := src[i]
		if open && c != '}' && c != ']' {
			open = false
			depth++
			newline()
		}
		switch c {
		case '"':
			end := stringEnd(src, i)
			w.Write(src[i:end])
			i = end - 1
		case '{', '[':
			open = true
			w.WriteByte(c)
		case ',':
			w.WriteByte(c)
			newline()
		case ':':
			w.WriteString(": ")
		case '}', ']':
			if open {
				open = false
			} else {
				depth--
				newline()
			}
			w.WriteByte(c)
		default:
			w.WriteByte(c)
		}
	}
}

// stringEnd is the index after the JSON string that starts at src[i] (a quote).
func stringEnd(src []byte, i int) int {
	for j := i + 1; ; {
		k := bytes.IndexByte(src[j:], '"')
		if k < 0 {
			return len(src)
		}
		j += k
		escapes := 0
		for p := j - 1; p > i && src[p] == '\\'; p-- {
			escapes++
		}
		if escapes%2 == 0 {
			return j + 1
		}
		j++
	}
}

// None is the placeholder for an empty cell.
const None = "<none>"

// Cell returns s, or <none> when s is empty, with inner spaces removed so columns stay parseable.
func Cell(s string) string {
	if s == "" {
		return None
	}
	return strings.ReplaceAll(s, " ", "_")
}

// WriteTable prints rows under UPPERCASE headers, kubectl style: no borders, left aligned, one word per
// cell (spaces become _) so columns stay parseable with awk.
func WriteTable(w io.Writer, header []string, rows [][]string) error {
	return writeTable(w, header, rows, Cell)
}

// WriteTableWrapped is WriteTable for prose in the last column (findings, messages): spaces are kept.
func WriteTableWrapped(w io.Writer, header []string, rows [][]string) error {
	return writeTable(w, header, rows, func(s string) string {
		if s == "" {
			return None
		}
		return s
	})
}

func writeTable(w io.Writer, header []string, rows [][]string, cell func(string) string) error {
	cfg := tw.CellConfig{
		Formatting: tw.CellFormatting{AutoFormat: tw.Off, AutoWrap: tw.WrapNone},
		Alignment:  tw.CellAlignment{Global: tw.AlignLeft},
		Padding:    tw.CellPadding{Global: tw.Padding{Right: "   "}},
	}
	t := tablewriter.NewTable(w,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders:  tw.BorderNone,
			Symbols:  tw.NewSymbols(tw.StyleNone),
			Settings: tw.Settings{Separators: tw.Separators{BetweenRows: tw.Off, BetweenColumns: tw.Off}, Lines: tw.Lines{ShowHeaderLine: tw.Off}},
		})),
		tablewriter.WithConfig(tablewriter.Config{Header: cfg, Row: cfg}),
	)
	upper := make([]any, len(header))
	for i, h := range header {
		upper[i] = strings.ToUpper(h)
	}
	t.Header(upper...)
	for _, r := range rows {
		cells := make([]any, len(r))
		for i, c := range r {
			cells[i] = cell(c)
		}
		if err := t.Append(cells...); err != nil {
			return err
		}
	}
	return t.Render()
}
