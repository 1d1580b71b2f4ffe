# The Debian package (issue 23 item 7): `make deb` builds pgark_<version>_<arch>.deb with
# dpkg-buildpackage, unprivileged (Rules-Requires-Root: no), leaving its outputs under
# BUILD/deb and nothing in the tree's parent; lintian finds no error in it (its warnings
# are listed here); the package holds the binary, the man page, /etc/pgark/pgark.yaml as
# a 0640 conffile and every systemd unit, and depends on the packages of the libraries
# pgark is linked with and of each one it dlopens (DL_LIBRARY in src/*/*_dl.c); unpacked
# with dpkg -x into an empty directory, its pgark runs `version` and loads the four
# dlopen'ed libraries from the system.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $build = "$tmp/build";

my $version;
{
	my $h = slurp_file("$root/include/pgark/version.h");
	($version) = $h =~ /^#define PGARK_VERSION "([^"]+)"$/m or die "no PGARK_VERSION in version.h";
}
my $arch = `dpkg --print-architecture`;
chomp $arch;

# dpkg-buildpackage writes its outputs (pgark_<version>_<arch>.deb, .buildinfo, .changes,
# pgark-dbgsym_...) into the source tree's parent by default. (Only those names are
# compared: the parent may be a directory others write to, like /var/tmp.)
my $parent = dirname($root);
sub outputs_in_parent
{
	opendir(my $dh, $parent) or die "$parent: $!";
	my @out = sort grep { /^pgark(?:-dbgsym)?_/ } readdir($dh);
	closedir($dh);
	return \@out;
}
my $parent_before = outputs_in_parent();

my $t0 = time;
# A whole build with dpkg-buildflags' flags: more time than the harness's default allows a
# step on a loaded machine. BUILD= given as a user would: it must not reach the package's build.
my $r = run_cmd([ 'make', '--no-print-directory', '-C', $root, "BUILD=$build", 'deb' ],
	env => { MAKEFLAGS => undef, MAKELEVEL => undef, MFLAGS => undef },
	timeout => 5 * $PostgreSQL::Test::Utils::timeout_default);
is($r->{rc}, 0, 'make deb') or diag($r->{stderr});
note('make deb took ' . (time - $t0) . ' s');
my $deb = "$build/deb/pgark_${version}_$arch.deb";
ok(-f $deb, "it leaves build/deb/pgark_${version}_$arch.deb");
ok(!-e "$build/pgark" && -x "$build/deb/pgark-$version/build/pgark",
	'built in the copy under build/deb, not in BUILD');
like($r->{stdout}, qr/^make deb: \Q$build\E\/deb\/pgark_\Q${version}_$arch\E\.deb$/m, 'and says where');

is_deeply(outputs_in_parent(), $parent_before, 'nothing written next to the tree');
ok(!-e "$root/debian/pgark" && !-e "$root/debian/files", 'nor into its debian/');

# lintian: no error; the warnings, if any, listed.
$r = run_cmd([ 'lintian', '--fail-on', 'error', '--display-level', '>=warning', $deb ]);
is($r->{rc}, 0, 'lintian exits 0 (no error)') or diag($r->{stdout} . $r->{stderr});
my @errors = grep { /^E: / } split /\n/, $r->{stdout};
is_deeply(\@errors, [], 'lintian reports no error');
diag("lintian: $_") for grep { /^W: / } split /\n/, $r->{stdout};

# The fields: the version, and a dependency on the package of every library.
my %f;
for my $field (qw(Package Version Architecture Depends))
{
	$r = run_cmd([ 'dpkg-deb', '--field', $deb, $field ]);
	chomp($f{$field} = $r->{stdout});
}
is($f{Package}, 'pgark', 'Package: pgark');
is($f{Version}, $version, "Version: $version, that of include/pgark/version.h");
is($f{Architecture}, $arch, "Architecture: $arch");
my %depends = map { /^(\S+)/ ? ($1 => $_) : () } split /\s*,\s*/, $f{Depends};
my %dlopen;
for my $file (glob("$root/src/*/*_dl.c"))
{
	my $src = slurp_file($file);
	$dlopen{$2} = $1 while $src =~ /^DL_LIBRARY\(\w+, "([^"]+)", "([^"]+)"\)/mg;
}
is_deeply([ sort keys %dlopen ], [qw(libcurl4 libpq5 libssl3 libzstd1)],
	'the shims dlopen the libraries of libcurl4, libpq5, libssl3 and libzstd1');
for my $pkg (sort(keys %dlopen), qw(libyaml-0-2 libjansson4 adduser))
{
	ok(exists $depends{$pkg}, "Depends: $pkg") or diag("Depends: $f{Depends}");
}
like($depends{$_} // '', qr/^\Q$_\E \(>= [^)]+\)$/, "with a minimum version: " . ($depends{$_} // $_))
  for sort keys %dlopen;

# The contents: binary, man page, the conffile (0640), the units.
$r = run_cmd([ 'dpkg-deb', '--contents', $deb ]);
my %mode = map { (split ' ', $_)[5] =~ s{^\.}{}r => (split ' ', $_)[0] } split /\n/, $r->{stdout};
is($mode{'/usr/bin/pgark'}, '-rwxr-xr-x', '/usr/bin/pgark');
is($mode{'/usr/share/man/man1/pgark.1.gz'}, '-rw-r--r--', 'the man page');
is($mode{'/etc/pgark/pgark.yaml'}, '-rw-r-----', '/etc/pgark/pgark.yaml, 0640 (it holds secrets)');
my @units = map { s{.*/}{}r } sort glob("$root/contrib/systemd/*.service $root/contrib/systemd/*.timer");
my @packaged = sort map { m{^/usr/lib/systemd/system/([^/]+)$} ? $1 : () } keys %mode;
is_deeply(\@packaged, \@units, 'every unit of contrib/systemd in /usr/lib/systemd/system');

$r = run_cmd([ 'dpkg-deb', '--info', $deb, 'conffiles' ]);
is($r->{stdout}, "/etc/pgark/pgark.yaml\n", 'the configuration is a conffile');
$r = run_cmd([ 'dpkg-deb', '--info', $deb, 'postinst' ]);
like($r->{stdout}, qr/^\s*addgroup --system --quiet pgark$/m, 'the postinst creates the pgark system group');
like($r->{stdout}, qr/^\s*adduser --system --ingroup pgark --home \/var\/lib\/pgark --quiet pgark$/m,
	'and user');
like($r->{stdout}, qr/chown root:pgark \/etc\/pgark\/pgark\.yaml/, 'and gives it the configuration to read');

# Unpacked in an empty directory: the files as make install left them.
my $x = "$tmp/root";
mkdir $x or die "$x: $!";
$r = run_cmd([ 'dpkg', '-x', $deb, $x ]);
is($r->{rc}, 0, 'dpkg -x') or diag($r->{stderr});
like(slurp_file("$x/usr/lib/systemd/system/pgark-receive\@.service"),
	qr{^ExecStart=/usr/bin/pgark --cluster %i receive$}m, 'the units run /usr/bin/pgark');
like(slurp_file("$x/usr/lib/systemd/system/pgark-receive\@.service"), qr/^User=pgark$/m,
	'as the pgark user');
is(slurp_file("$x/etc/pgark/pgark.yaml"), slurp_file("$root/conf/pgark.yaml"),
	'/etc/pgark/pgark.yaml is conf/pgark.yaml');

$r = run_cmd([ "$x/usr/bin/pgark", 'version' ]);
is($r->{rc}, 0, 'the unpacked pgark runs');
is($r->{stdout}, "pgark $version\n", "and says pgark $version");

# The libraries pgark dlopens, found on the system (not in the unpacked tree): `check`
# with a zstd-compressed, encrypted posix repository, an S3 one where nothing listens and
# a server that is not there loads all four, and gets as far as each one's own error.
my $config = write_file("$tmp/pgark.yaml", <<"YAML", 0600);
spool: $tmp/spool
compression:
  algorithm: zstd
encryption:
  passphrase: not-a-secret
repos:
  local: { type: posix, path: $tmp/repo }
  offsite: { type: s3, endpoint: "http://127.0.0.1:${\ free_tcp_port()}", allow_http: true, region: us-east-1,
             bucket: wal-bucket, access_key_id: AKIDEXAMPLE, secret_access_key: not-a-secret-either }
clusters:
  main:
    conninfo: "host=$tmp/nosocket dbname=postgres"
    repos: [local, offsite]
YAML
# The loader's trace goes to $tmp/ld.<pid> (LD_DEBUG_OUTPUT), not into this test's log.
$r = run_cmd([ "$x/usr/bin/pgark", '--config', $config, 'check' ],
	env => { LD_DEBUG => 'libs', LD_DEBUG_OUTPUT => "$tmp/ld", LD_LIBRARY_PATH => undef });
unlike($r->{stderr}, qr/could not load/, 'check: every library loads');
my $trace = join '', map { slurp_file($_) } glob("$tmp/ld.*");
for my $so (qw(libpq.so.5 libcrypto.so.3 libzstd.so.1 libcurl.so.4))
{
	my ($path) = $trace =~ m{calling init: (\S*/\Q$so\E)$}m;
	ok(defined $path && index($path, $x) != 0, "$so is loaded from the system: " . ($path // 'not loaded'));
}
like($r->{stdout}, qr/^FAIL  connection .*No such file or directory/m, 'libpq tried the socket');
like($r->{stdout}, qr/^FAIL  repository:offsite .*Couldn't connect to server/m, 'libcurl tried the endpoint');

# A version bumped in version.h without a changelog entry: refused before any build.
my $bumped = "$tmp/bumped";
mkdir $bumped or die "$bumped: $!";
mkdir "$bumped/$_" or die "$bumped/$_: $!" for qw(debian include include/pgark);
write_file("$bumped/Makefile", slurp_file("$root/Makefile"), 0644);
write_file("$bumped/debian/changelog", slurp_file("$root/debian/changelog"), 0644);
write_file("$bumped/include/pgark/version.h",
	slurp_file("$root/include/pgark/version.h") =~ s/"\Q$version\E"/"$version.1"/r, 0644);
$r = run_cmd([ 'make', '--no-print-directory', '-C', $bumped, 'deb' ],
	env => { MAKEFLAGS => undef, MAKELEVEL => undef, MFLAGS => undef });
isnt($r->{rc}, 0, 'make deb with a version.h ahead of debian/changelog fails');
like($r->{stderr},
	qr/^make deb: debian\/changelog is at \Q$version\E, include\/pgark\/version\.h at \Q$version\E\.1: add a changelog entry \(dch -v \Q$version\E\.1\)$/m,
	'saying which versions differ and what to do');
ok(!-e "$bumped/build", 'and builds nothing');

done_testing();
