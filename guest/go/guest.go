// Package guest makes a plain Go function a functions-host WebAssembly function: the JSON event
// (the request body) becomes its arguments and its return value the JSON response.
//
//	func Hello(name string) string { return "Hello, " + name + "!" }
//
//	func main() { guest.Serve(Hello, "name") }
//
// Binding, as the Rust crate's #[func] does it:
//   - an object binds by parameter name ({"name":"Ada"}); Go cannot see parameter names, so
//     pass them to Serve. A function of one parameter also takes an object of one member;
//   - an array binds by position (["Ada"]);
//   - a function of one parameter takes the bare value ("Ada"), and, for a string parameter, a
//     body that is not JSON as the text itself;
//   - a pointer parameter may be left out (nil); any other missing argument is a bad event.
//
// The function may return nothing, a value, an error, or a value and an error. A bad event exits
// with status 2 and an error with status 1, each with the reason on stderr, so the call fails
// carrying it. Under the WAGI executor ("executor": "wagi", which functions-host deploy picks
// for sources using this package) the response instead has Content-Type: application/json, and
// a bad event is a 400 and an error a 500, each with {"error": message}.
//
// Build: GOOS=wasip1 GOARCH=wasm go build (Go 1.21 or newer).
package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"unicode/utf8"
)

// Outcome is how one call ended: Status 200 with the result, 400 for a bad event, 500 when the
// function returned an error; Message says why it failed.
type Outcome struct {
	Status  int
	Result  json.RawMessage
	Message string
}

var errorType = reflect.TypeOf((*error)(nil)).Elem()

// Serve runs function on the event on stdin and writes its result to stdout; it does not return.
// names are the function's parameter names, in order, for events that are objects.
func Serve(function any, names ...string) {
	input, err := io.ReadAll(os.Stdin)
	var outcome Outcome
	if err != nil {
		outcome = Outcome{Status: 400, Message: "reading the event: " + err.Error()}
	} else {
		outcome = Call(function, names, input)
	}
	cgi := os.Getenv("GATEWAY_INTERFACE") != ""
	body := outcome.Result
	code := 0
	if outcome.Status != 200 {
		if outcome.Status == 400 {
			fmt.Fprintln(os.Stderr, "bad event: "+outcome.Message)
			code = 2
		} else {
			fmt.Fprintln(os.Stderr, outcome.Message)
			code = 1
		}
		body, _ = json.Marshal(map[string]string{"error": outcome.Message})
	}
	if cgi {
		fmt.Printf("Content-Type: application/json\nStatus: %d\n\n", outcome.Status)
		os.Stdout.Write(body)
		os.Exit(0)
	}
	if code == 0 {
		os.Stdout.Write(body)
	}
	os.Exit(code)
}

// Call binds input (the event) to function's parameters, called names, and runs it.
func Call(function any, names []string, input []byte) Outcome {
	fn := reflect.ValueOf(function)
	if fn.Kind() != reflect.Func {
		return Outcome{Status: 500, Message: fmt.Sprintf("guest.Serve needs a func, not %T", function)}
	}
	t := fn.Type()
	if len(names) != 0 && len(names) != t.NumIn() {
		return Outcome{Status: 500, Message: fmt.Sprintf("guest.Serve: %d names for %d parameters", len(names), t.NumIn())}
	}
	args, err := bind(t, names, input)
	if err != nil {
		return Outcome{Status: 400, Message: err.Error()}
	}
	results := fn.Call(args)
	if n := len(results); n > 0 && t.Out(n-1) == errorType {
		if err, _ := results[n-1].Interface().(error); err != nil {
			return Outcome{Status: 500, Message: err.Error()}
		}
		results = results[:n-1]
	}
	var value any
	if len(results) > 0 {
		value = results[0].Interface()
	}
	out, err := json.Marshal(value)
	if err != nil {
		return Outcome{Status: 500, Message: "writing the result as JSON: " + err.Error()}
	}
	return Outcome{Status: 200, Result: out}
}

// name is how messages call parameter i.
func name(names []string, i int) string {
	if i < len(names) {
		return "`" + names[i] + "`"
	}
	return fmt.Sprintf("argument %d", i+1)
}

func bind(t reflect.Type, names []string, input []byte) ([]reflect.Value, error) {
	n := t.NumIn()
	raw := make([]json.RawMessage, n)
	present := make([]bool, n)
	text := bytes.TrimSpace(input)
	switch {
	case n == 0 || len(text) == 0:
	case !utf8.Valid(input):
		return nil, errors.New("the event is not UTF-8")
	case !json.Valid(text):
		if n != 1 || t.In(0).Kind() != reflect.String {
			var probe any
			return nil, fmt.Errorf("the event is not JSON: %v", json.Unmarshal(text, &probe))
		}
		// Plain text for a function of one string parameter: curl -d Ada.
		line := strings.TrimSuffix(strings.TrimSuffix(string(input), "\n"), "\r")
		quoted, _ := json.Marshal(line)
		raw[0], present[0] = quoted, true
	default:
		var members map[string]json.RawMessage
		var items []json.RawMessage
		byName := json.Unmarshal(text, &members) == nil && names != nil && namesAny(members, names)
		switch {
		case byName:
			for i, name := range names {
				raw[i], present[i] = members[name]
			}
		case n == 1:
			return bindOne(t.In(0), names, text)
		case json.Unmarshal(text, &items) == nil:
			if len(items) > n {
				return nil, fmt.Errorf("%d arguments for %d parameters", len(items), n)
			}
			for i, item := range items {
				raw[i], present[i] = item, true
			}
		case names == nil:
			return nil, fmt.Errorf("expected an array of %d arguments (to bind an object, give guest.Serve the parameter names)", n)
		default:
			return nil, fmt.Errorf("expected an object with %s or an array of them", strings.Join(names, ", "))
		}
	}
	args := make([]reflect.Value, n)
	for i := range args {
		if !present[i] {
			if t.In(i).Kind() != reflect.Pointer {
				return nil, fmt.Errorf("missing argument %s", name(names, i))
			}
			args[i] = reflect.Zero(t.In(i))
			continue
		}
		arg, err := decode(t.In(i), raw[i])
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name(names, i), err)
		}
		args[i] = arg
	}
	return args, nil
}

func namesAny(members map[string]json.RawMessage, names []string) bool {
	for _, name := range names {
		if _, ok := members[name]; ok {
			return true
		}
	}
	return false
}

// bindOne binds the whole event to a function's one parameter: as it is, or else the one item
// of an array or, when the parameter's name is not known, the one member of an object.
func bindOne(t reflect.Type, names []string, text []byte) ([]reflect.Value, error) {
	name := name(names, 0)
	arg, err := decode(t, text)
	if err == nil {
		return []reflect.Value{arg}, nil
	}
	var items []json.RawMessage
	var members map[string]json.RawMessage
	if json.Unmarshal(text, &items) == nil && len(items) == 1 {
		arg, err = decode(t, items[0])
	} else if json.Unmarshal(text, &members) == nil {
		if len(members) != 1 || names != nil {
			return nil, fmt.Errorf("missing argument %s", name)
		}
		for _, member := range members {
			arg, err = decode(t, member)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return []reflect.Value{arg}, nil
}

func decode(t reflect.Type, raw json.RawMessage) (reflect.Value, error) {
	arg := reflect.New(t)
	decoder := json.NewDecoder(bytes.NewReader(raw))
	if err := decoder.Decode(arg.Interface()); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return arg, fmt.Errorf("expected %s, got a JSON %s", typeErr.Type, typeErr.Value)
		}
		return arg, err
	}
	return arg.Elem(), nil
}
