package sim

// connectFlags are the flags `repository create` and `repository connect`
// share (kopia's connectOptions).
var connectFlags = []flagSpec{
	{name: "override-hostname"},
	{name: "override-username"},
	{name: "description"},
	{name: "readonly", boolean: true},
	{name: "cache-directory", envar: "KOPIA_CACHE_DIRECTORY"},
}

var jsonFlag = flagSpec{name: "json", boolean: true}

// userFlags are the flags of `server users add` and `server users set`.
var userFlags = []flagSpec{
	{name: "user-password"},
	{name: "ask-password", boolean: true},
}

// serverClientFlags address a running `kopia server`.
var serverClientFlags = []flagSpec{
	{name: "address", envar: "KOPIA_SERVER_ADDRESS", def: "http://127.0.0.1:51515"},
	{name: "server-control-username", envar: "KOPIA_SERVER_CONTROL_USERNAME"},
	{name: "server-control-password", envar: "KOPIA_SERVER_CONTROL_PASSWORD"},
	{name: "server-username", envar: "KOPIA_SERVER_USERNAME"},
	{name: "server-password", envar: "KOPIA_SERVER_PASSWORD"},
	{name: "server-cert-fingerprint", envar: "KOPIA_SERVER_CERT_FINGERPRINT"},
}

// commands is the part of kopia's command tree the simulator serves, with
// kopia's names, aliases, flags and arguments.
var commands = &command{subs: []*command{
	{name: "repository", aliases: []string{"repo"}, subs: []*command{
		{name: "create", flags: append([]flagSpec{{name: "create-only", short: 'c', boolean: true}}, connectFlags...), subs: []*command{
			{name: "filesystem", op: "repository.create", targetArg: "--path", run: (*execution).repositoryCreate,
				flags: []flagSpec{{name: "path", required: true}}},
		}},
		{name: "connect", flags: connectFlags, subs: []*command{
			{name: "filesystem", op: "repository.connect", targetArg: "--path", run: (*execution).connectFilesystem,
				flags: []flagSpec{{name: "path", required: true}}},
			{name: "server", op: "repository.connect", targetArg: "--url", run: (*execution).connectServer,
				flags: []flagSpec{{name: "url", required: true}, {name: "server-cert-fingerprint"}}},
		}},
		{name: "status", op: "repository.status", run: (*execution).repositoryStatus,
			flags: []flagSpec{jsonFlag}},
		{name: "disconnect", op: "repository.disconnect", run: (*execution).repositoryDisconnect},
	}},
	{name: "server", subs: []*command{
		{name: "users", aliases: []string{"user"}, subs: []*command{
			{name: "add", aliases: []string{"create"}, op: "server.users.add", targetArg: "username", run: (*execution).userAdd,
				flags: userFlags, args: []argSpec{{name: "username", required: true}}},
			{name: "set", aliases: []string{"update"}, op: "server.users.set", targetArg: "username", run: (*execution).userSet,
				flags: userFlags, args: []argSpec{{name: "username", required: true}}},
			{name: "delete", aliases: []string{"remove", "rm"}, op: "server.users.delete", targetArg: "username", run: (*execution).userDelete,
				args: []argSpec{{name: "username", required: true}}},
			{name: "list", aliases: []string{"ls"}, op: "server.users.list", run: (*execution).userList,
				flags: []flagSpec{jsonFlag}},
			{name: "info", op: "server.users.info", targetArg: "username", run: (*execution).userInfo,
				args: []argSpec{{name: "username", required: true}}},
		}},
		{name: "refresh", op: "server.refresh", targetArg: "--address", run: (*execution).serverRefresh,
			flags: serverClientFlags},
	}},
	{name: "snapshot", aliases: []string{"snap"}, subs: []*command{
		{name: "create", op: "snapshot.create", targetArg: "source", run: (*execution).snapshotCreate,
			args: []argSpec{{name: "source", multi: true}},
			flags: []flagSpec{jsonFlag, {name: "json-verbose", boolean: true}, {name: "description"},
				{name: "tags", multi: true}, {name: "pin", multi: true}}},
		{name: "list", aliases: []string{"ls"}, op: "snapshot.list", targetArg: "source", run: (*execution).snapshotList,
			args: []argSpec{{name: "source"}},
			flags: []flagSpec{jsonFlag, {name: "all", short: 'a', boolean: true}, {name: "tags", multi: true},
				{name: "max-results", short: 'n', integer: true}, {name: "reverse", boolean: true},
				{name: "incomplete", short: 'i', boolean: true}, {name: "manifest-id", short: 'm', boolean: true},
				{name: "retention", boolean: true, def: "true"}}},
		{name: "restore", op: "snapshot.restore", targetArg: "sources", run: (*execution).snapshotRestore,
			args: []argSpec{{name: "sources", required: true, multi: true}}},
		{name: "delete", op: "snapshot.delete", targetArg: "id", run: (*execution).snapshotDelete,
			args:  []argSpec{{name: "id", required: true, multi: true}},
			flags: []flagSpec{{name: "delete", boolean: true}, {name: "unsafe-ignore-source", boolean: true}}},
	}},
	{name: "policy", aliases: []string{"policies"}, subs: []*command{
		{name: "set", op: "policy.set", targetArg: "target", run: (*execution).policySet,
			args: []argSpec{{name: "target", multi: true}},
			flags: []flagSpec{{name: "global", boolean: true}, {name: "keep-latest"}, {name: "keep-hourly"},
				{name: "keep-daily"}, {name: "keep-weekly"}, {name: "keep-monthly"}, {name: "keep-annual"}}},
	}},
}}
