// kstatus reads Kubernetes objects as JSON (one object, or a List, on stdin) and
// prints, for each, the status cli-utils' kstatus computes: one JSON object a
// line with the object's kind, name, status (InProgress, Current, Failed,
// Terminating, NotFound, Unknown) and message. The exit code is 0 unless the
// input cannot be read.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: kubectl get KIND NAME -o json | %s\n\n"+
			"Prints kstatus (sigs.k8s.io/cli-utils) for each object read on stdin.\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	var doc unstructured.Unstructured
	if err := doc.UnmarshalJSON(raw); err != nil {
		return fmt.Errorf("stdin is not a Kubernetes object as JSON: %w", err)
	}
	objects := []unstructured.Unstructured{doc}
	if doc.IsList() {
		list, err := doc.ToList()
		if err != nil {
			return fmt.Errorf("reading the list: %w", err)
		}
		objects = list.Items
	}
	encoder := json.NewEncoder(out)
	for i := range objects {
		result, err := status.Compute(&objects[i])
		if err != nil {
			return fmt.Errorf("%s %s: %w", objects[i].GetKind(), objects[i].GetName(), err)
		}
		line := verdict{Kind: objects[i].GetKind(), Name: objects[i].GetName(),
			Status: result.Status.String(), Message: result.Message}
		if err := encoder.Encode(line); err != nil {
			return err
		}
	}
	return nil
}
