package guest

import (
	"errors"
	"strings"
	"testing"
)

func hello(name string) string { return "Hello, " + name + "!" }

func add(a, b int, scale *float64) (float64, error) {
	sum := float64(a + b)
	if scale != nil {
		sum *= *scale
	}
	if sum < 0 {
		return 0, errors.New("the sum is negative")
	}
	return sum, nil
}

type point struct {
	X, Y int
}

func norm(p point) int { return p.X*p.X + p.Y*p.Y }

func returned(t *testing.T, outcome Outcome) string {
	t.Helper()
	if outcome.Status != 200 {
		t.Fatalf("expected a result, got %d %s", outcome.Status, outcome.Message)
	}
	return string(outcome.Result)
}

func failed(t *testing.T, outcome Outcome, status int) string {
	t.Helper()
	if outcome.Status != status {
		t.Fatalf("expected status %d, got %d (%s%s)", status, outcome.Status, outcome.Result, outcome.Message)
	}
	return outcome.Message
}

func TestOneParameterBindsByNamePositionBareValueOrText(t *testing.T) {
	for _, names := range [][]string{{"name"}, nil} {
		for _, event := range []string{`{"name":"Ada"}`, `["Ada"]`, `"Ada"`, "Ada", "Ada\n"} {
			if got := returned(t, Call(hello, names, []byte(event))); got != `"Hello, Ada!"` {
				t.Errorf("%q with names %v: %s", event, names, got)
			}
		}
	}
	if got := returned(t, Call(hello, []string{"name"}, []byte(`{"x":1,"name":"Ada"}`))); got != `"Hello, Ada!"` {
		t.Errorf("by name among others: %s", got)
	}
}

func TestAMissingOrMistypedArgumentIsABadEvent(t *testing.T) {
	names := []string{"name"}
	for event, want := range map[string]string{
		``:                  "missing argument `name`",
		`{"name":7}`:        "`name`: expected string, got a JSON number",
		`7`:                 "`name`: expected string, got a JSON number",
		`{"a":"x","b":"y"}`: "missing argument `name`",
		`{"nmae":"Ada"}`:    "missing argument `name`",
		"\xff":              "the event is not UTF-8",
	} {
		if got := failed(t, Call(hello, names, []byte(event)), 400); got != want {
			t.Errorf("%q: %q, want %q", event, got, want)
		}
	}
}

func TestSeveralParametersBindByNameOrPositionAndPointersMayBeLeftOut(t *testing.T) {
	names := []string{"a", "b", "scale"}
	for event, want := range map[string]string{
		`{"a":2,"b":3}`:             "5",
		`{"b":3,"a":2,"scale":0.5}`: "2.5",
		`[2,3,2]`:                   "10",
		`[2,3]`:                     "5",
	} {
		if got := returned(t, Call(add, names, []byte(event))); got != want {
			t.Errorf("%s: %s, want %s", event, got, want)
		}
	}
	for event, want := range map[string]string{
		`{"a":2}`:         "missing argument `b`",
		`[1,2,3,4]`:       "4 arguments for 3 parameters",
		`3`:               "expected an object with a, b, scale or an array of them",
		`{"a":1.5,"b":1}`: "`a`: expected int, got a JSON number 1.5",
	} {
		if got := failed(t, Call(add, names, []byte(event)), 400); got != want {
			t.Errorf("%s: %q, want %q", event, got, want)
		}
	}
	if got := failed(t, Call(add, nil, []byte(`{"a":1}`)), 400); !strings.Contains(got, "give guest.Serve the parameter names") {
		t.Errorf("an object without names: %q", got)
	}
	if got := failed(t, Call(add, names, []byte(`{oops`)), 400); !strings.HasPrefix(got, "the event is not JSON: ") {
		t.Errorf("not JSON: %q", got)
	}
}

func TestAnErrorFailsTheCallWithItsMessage(t *testing.T) {
	if got := failed(t, Call(add, nil, []byte(`[-5,1]`)), 500); got != "the sum is negative" {
		t.Errorf("%q", got)
	}
	if got := failed(t, Call(hello, []string{"a", "b"}, nil), 500); got != "guest.Serve: 2 names for 1 parameters" {
		t.Errorf("%q", got)
	}
}

func TestStructsTakeTheWholeEvent(t *testing.T) {
	if got := returned(t, Call(norm, nil, []byte(`{"X":3,"Y":4}`))); got != "25" {
		t.Errorf("%s", got)
	}
	if got := returned(t, Call(func() {}, nil, []byte(`ignored`))); got != "null" {
		t.Errorf("%s", got)
	}
}
