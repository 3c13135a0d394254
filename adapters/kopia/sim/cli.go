package sim

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// flagSpec is one kingpin flag.
type flagSpec struct {
	name     string
	short    byte
	boolean  bool
	multi    bool // cumulative: may repeat
	integer  bool
	envar    string
	def      string
	enum     []string
	required bool
}

// argSpec is one kingpin positional argument.
type argSpec struct {
	name     string
	required bool
	multi    bool
}

// command is a node of kopia's command tree. Leaves have an op and run.
type command struct {
	name    string
	aliases []string
	flags   []flagSpec
	args    []argSpec
	subs    []*command
	op      string
	// targetArg names the argument (or flag, with "--") the call log
	// records as the call's target.
	targetArg string
	run       func(*execution) int
}

func (c *command) find(name string) *command {
	for _, sub := range c.subs {
		if sub.name == name || slices.Contains(sub.aliases, name) {
			return sub
		}
	}
	return nil
}

// globalFlags are the application flags kopia accepts before or after any
// command.
var globalFlags = []flagSpec{
	{name: "password", short: 'p', envar: "KOPIA_PASSWORD"},
	{name: "config-file", envar: "KOPIA_CONFIG_PATH", def: "repository.config"},
	{name: "persist-credentials", boolean: true, def: "true", envar: "KOPIA_PERSIST_CREDENTIALS_ON_CONNECT"},
	{name: "disable-color", boolean: true, envar: "KOPIA_DISABLE_COLOR"},
	{name: "log-level", def: "info", enum: []string{"debug", "info", "warning", "error"}},
	{name: "progress", boolean: true, def: "true"},
}

// invocation is a parsed command line.
type invocation struct {
	cmd   *command
	path  []*command
	flags map[string][]string
	args  map[string][]string
	env   map[string]string
	specs map[string]flagSpec
}

// str is a flag's value: the last one given, else its environment
// variable, else its default.
func (inv *invocation) str(name string) string {
	if v := inv.flags[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	spec := inv.specs[name]
	if v, ok := inv.env[spec.envar]; ok && spec.envar != "" {
		return v
	}
	return spec.def
}

func (inv *invocation) boolean(name string) bool {
	v, _ := strconv.ParseBool(inv.str(name))
	return v
}

func (inv *invocation) arg(name string) string {
	if v := inv.args[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// target is what the call log records the call to be about.
func (inv *invocation) target() string {
	if f, ok := strings.CutPrefix(inv.cmd.targetArg, "--"); ok {
		return inv.str(f)
	}
	return strings.Join(inv.args[inv.cmd.targetArg], " ")
}

// fullCommand is the matched command's name as kingpin prints it.
func (inv *invocation) fullCommand() string {
	names := make([]string, 0, len(inv.path))
	for _, c := range inv.path {
		names = append(names, c.name)
	}
	return strings.Join(names, " ")
}

// parse parses kopia's arguments the way kingpin v2 does: flags of the
// application and of every command matched so far, anywhere on the line;
// --flag=value and --flag value; --no-flag for booleans; combined short
// flags; "--" ends flags. Errors carry kingpin's text.
func parse(words []string, env map[string]string) (*invocation, error) {
	inv := &invocation{cmd: commands, flags: map[string][]string{}, args: map[string][]string{}, env: env, specs: map[string]flagSpec{}}
	short := map[byte]string{}
	learn := func(fs []flagSpec) {
		for _, f := range fs {
			inv.specs[f.name] = f
			if f.short != 0 {
				short[f.short] = f.name
			}
		}
	}
	learn(globalFlags)
	argIdx, argsOnly := 0, false
	for len(words) > 0 {
		w := words[0]
		words = words[1:]
		switch {
		case argsOnly || w == "-" || !strings.HasPrefix(w, "-"):
			if len(inv.cmd.subs) > 0 {
				sub := inv.cmd.find(w)
				if sub == nil {
					return nil, fmt.Errorf("expected command but got %q", w)
				}
				inv.cmd = sub
				inv.path = append(inv.path, sub)
				learn(sub.flags)
				continue
			}
			if argIdx >= len(inv.cmd.args) {
				return nil, fmt.Errorf("unexpected %s", w)
			}
			a := inv.cmd.args[argIdx]
			inv.args[a.name] = append(inv.args[a.name], w)
			if !a.multi {
				argIdx++
			}
		case w == "--":
			argsOnly = true
		case strings.HasPrefix(w, "--"):
			name, value, hasValue := strings.Cut(w[2:], "=")
			f, ok := inv.specs[name]
			invert := false
			if !ok {
				if base, isNo := strings.CutPrefix(name, "no-"); isNo {
					f, ok = inv.specs[base]
					invert = true
				}
			}
			if !ok || invert && !f.boolean {
				return nil, fmt.Errorf("unknown long flag '--%s'", name)
			}
			if hasValue {
				// kingpin turns "=value" into the next token.
				words = append([]string{value}, words...)
			}
			if f.boolean {
				inv.flags[f.name] = append(inv.flags[f.name], strconv.FormatBool(!invert))
				continue
			}
			if len(words) == 0 || strings.HasPrefix(words[0], "-") && words[0] != "-" && !hasValue {
				return nil, fmt.Errorf("expected argument for flag '--%s'", name)
			}
			inv.flags[f.name] = append(inv.flags[f.name], words[0])
			words = words[1:]
		default:
			name, ok := short[w[1]]
			if !ok {
				return nil, fmt.Errorf("unknown short flag '-%c'", w[1])
			}
			f := inv.specs[name]
			rest := w[2:]
			if f.boolean {
				inv.flags[name] = append(inv.flags[name], "true")
				if rest != "" {
					words = append([]string{"-" + rest}, words...)
				}
				continue
			}
			if rest == "" {
				if len(words) == 0 || strings.HasPrefix(words[0], "-") && words[0] != "-" {
					return nil, fmt.Errorf("expected argument for flag '-%c'", w[1])
				}
				rest, words = words[0], words[1:]
			}
			inv.flags[name] = append(inv.flags[name], rest)
		}
	}
	return inv, inv.validate()
}

// validate applies kingpin's checks after tokens are consumed.
func (inv *invocation) validate() error {
	if len(inv.path) == 0 {
		return fmt.Errorf("command not specified")
	}
	for name, values := range inv.flags {
		f := inv.specs[name]
		if len(values) > 1 && !f.multi {
			return fmt.Errorf("flag '%s' cannot be repeated", name)
		}
	}
	for name := range inv.specs {
		f := inv.specs[name]
		v := inv.str(name)
		if len(f.enum) > 0 && !slices.Contains(f.enum, v) {
			return fmt.Errorf("enum value must be one of %s, got '%s'", strings.Join(f.enum, ","), v)
		}
		if f.integer && v != "" {
			if _, err := strconv.ParseInt(v, 0, 64); err != nil {
				return err
			}
		}
	}
	if len(inv.cmd.subs) > 0 {
		return fmt.Errorf("must select a subcommand of '%s'", inv.fullCommand())
	}
	for _, c := range inv.path {
		for _, f := range c.flags {
			if f.required && inv.str(f.name) == "" {
				return fmt.Errorf("required flag --%s not provided", f.name)
			}
		}
	}
	for _, a := range inv.cmd.args {
		if a.required && len(inv.args[a.name]) == 0 {
			return fmt.Errorf("required argument '%s' not provided", a.name)
		}
	}
	return nil
}

// execution is one kopia process: its arguments, environment and output.
type execution struct {
	s         *Server
	ctx       context.Context
	user      string // the SSH login, kopia's default username
	env       map[string]string
	inv       *invocation
	stdout    bytes.Buffer
	stderr    bytes.Buffer
	color     bool
	quiet     bool // --log-level above info
	taskError string
	// gone is set when the client went away before the command ended.
	gone bool
}

func (e *execution) configure() {
	e.color = !e.inv.boolean("disable-color")
	lvl := e.inv.str("log-level")
	e.quiet = lvl == "warning" || lvl == "error"
}

// home is the login's home directory, the working directory of the
// command.
func (e *execution) home() string {
	if e.user == "root" {
		return "/root"
	}
	return "/home/" + e.user
}

// info logs at info level: plain text on stderr.
func (e *execution) info(format string, args ...any) {
	if !e.quiet {
		fmt.Fprintf(&e.stderr, format+"\n", args...)
	}
}

// errorf logs at error level as kopia's console logger does, with a red
// ERROR unless colors are disabled.
func (e *execution) errorf(format string, args ...any) {
	level := "ERROR"
	if e.color {
		level = "\x1b[31mERROR\x1b[0m"
	}
	fmt.Fprintf(&e.stderr, level+" "+format+"\n", args...)
}

// fail ends the command with err as kopia does: logged, exit status 1.
func (e *execution) fail(err error) int {
	e.errorf("%s", err.Error())
	return 1
}
