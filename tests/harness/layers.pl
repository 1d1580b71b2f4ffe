#!/usr/bin/env perl
# layers.pl — dependencies point down only: checks the #include lines of src/,
# walreceiver/ and include/pgark/ against the layers of CONVENTIONS.md.
#
#   rank 0  common
#   rank 1  config  crypto  compress  http      (none includes another)
#   rank 2  storage  notify                      (neither includes the other)
#   rank 3  repo
#   rank 4  pg
#   rank 5  cli                                  (configuration -> storage, repositories)
#   rank 6  backup  restore  ops  walreceiver    (the commands; none includes another)
#   rank 7  main                                 (src/main.c: dispatch)
#
# A file may include a header of its own folder or of a lower rank, never a higher one
# nor a sibling of its rank. A public header (include/pgark/X.h) belongs to the folder
# the table below gives it (an unlisted one is an error: say where it belongs). A
# private header (*_int.h) is included only from its own folder. The outside libraries
# are included where their module is: libcurl in http, libpq in pg, libcrypto in
# crypto, libzstd in compress, libyaml in config.
#
# Prints each violation as "FILE:LINE: FOLDER includes HEADER of FOLDER (why)" and
# exits 1 when there is one; `--graph` prints the folder graph instead. Run from
# anywhere: `make layers`, and tests/t/002_tree.pl in `make check`.
use strict;
use warnings;
use File::Basename qw(dirname basename);
use File::Find;
use File::Spec;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
chdir $root or die "layers: cannot enter $root: $!\n";

my %rank = (
	common => 0,
	config => 1, crypto => 1, compress => 1, http => 1,
	storage => 2, notify => 2,
	repo => 3,
	pg => 4,
	cli => 5,
	backup => 6, restore => 6, ops => 6, walreceiver => 6,
	main => 7,
);

# The folder each public header belongs to.
my %header = (
	'crc32c.h' => 'common', 'dl.h' => 'common', 'error.h' => 'common',
	'filter.h' => 'common', 'log.h' => 'common', 'mem.h' => 'common',
	'pgmajor.h' => 'common', 'pool.h' => 'common', 'privfs.h' => 'common', 'procenv.h' => 'common',
	'progress.h' => 'common', 'sdnotify.h' => 'common', 'testhook.h' => 'common', 'units.h' => 'common',
	'version.h' => 'common',
	'wal.h' => 'common', 'waldecode.h' => 'common', 'walpage.h' => 'common',
	'config.h' => 'config',
	'crypto.h' => 'crypto', 'hash.h' => 'crypto',
	'compress.h' => 'compress',
	'http.h' => 'http',
	'storage.h' => 'storage', 'storage_s3.h' => 'storage',
	'notify.h' => 'notify',
	'chunkset.h' => 'repo', 'codec.h' => 'repo', 'manifest.h' => 'repo',
	'repo.h' => 'repo', 'rpohist.h' => 'repo',
	'bbstream.h' => 'pg', 'pg.h' => 'pg', 'pg_basebackup.h' => 'pg', 'pg_incremental.h' => 'pg',
	'pg_stream.h' => 'pg', 'pgbin.h' => 'pg', 'tar.h' => 'pg',
	'cli.h' => 'cli', 'helpdoc.h' => 'cli', 'confsnap.h' => 'cli',
	'backup.h' => 'backup', 'chunker.h' => 'backup',
	'restore.h' => 'restore',
	'ops.h' => 'ops',
	'walreceiver.h' => 'walreceiver',
);

# System headers that only one folder may include.
my @library = (
	[ qr{^curl/}, 'http', 'libcurl' ],
	[ qr{^libpq-fe\.h$|^libpq/}, 'pg', 'libpq' ],
	[ qr{^openssl/}, 'crypto', 'libcrypto' ],
	[ qr{^zstd(_errors)?\.h$}, 'compress', 'libzstd' ],
	[ qr{^yaml\.h$}, 'config', 'libyaml' ],
);

# The folder of a file of the tree, or undef for one outside the layers.
sub folder_of
{
	my ($path) = @_;
	return 'walreceiver' if $path =~ m{^walreceiver/};
	return 'main' if $path eq 'src/main.c';
	return $1 if $path =~ m{^src/([^/]+)/};
	if ($path =~ m{^include/pgark/([^/]+)$})
	{
		return $header{$1} // '?';
	}
	return undef;
}

my @files;
find(
	{
		wanted => sub { push @files, $File::Find::name if /\.[ch]$/ && -f $_ },
		no_chdir => 1
	},
	grep { -d } qw(src walreceiver include));
@files = sort @files;

my $graph = grep { $_ eq '--graph' } @ARGV;
my (@problems, %edges);

for my $file (@files)
{
	my $from = folder_of($file);
	if ($from eq '?')
	{
		push @problems,
		  "$file: a public header in no layer: add it to the table of tests/harness/layers.pl";
		next;
	}
	die "layers: unknown folder of $file\n" unless exists $rank{$from};
	open my $fh, '<', $file or die "layers: cannot read $file: $!\n";
	while (my $line = <$fh>)
	{
		if ($line =~ /^\s*#\s*include\s*<([^>]+)>/)
		{
			my $sys = $1;
			for my $l (@library)
			{
				my ($re, $owner, $name) = @$l;
				push @problems, "$file:$.: $from includes <$sys>: only $owner includes $name"
				  if $sys =~ $re && $from ne $owner;
			}
			next;
		}
		next unless $line =~ /^\s*#\s*include\s*"([^"]+)"/;
		my $inc = $1;
		my ($target, $to);
		if ($inc =~ m{^pgark/([^/]+)$})
		{
			$target = "include/pgark/$1";
			$to = $header{$1};
			if (!defined $to)
			{
				push @problems, "$file:$.: includes $inc, a public header in no layer";
				next;
			}
		}
		else
		{
			$target = File::Spec->abs2rel(
				File::Spec->rel2abs($inc, dirname(File::Spec->rel2abs($file))), $root);
			$target =~ s{/[^/]+/\.\./}{/}g;
			$to = folder_of($target);
			if (!defined $to)
			{
				push @problems, "$file:$.: includes \"$inc\" from outside the layers";
				next;
			}
			if ($to ne $from)
			{
				push @problems,
				  "$file:$.: $from includes \"$inc\", another folder's private header";
				next;
			}
		}
		next if $to eq $from;
		push @{ $edges{"$from -> $to"} }, "$file:$.";
		if ($rank{$to} > $rank{$from})
		{
			push @problems, "$file:$.: $from includes $inc of $to, a higher layer";
		}
		elsif ($rank{$to} == $rank{$from})
		{
			push @problems, "$file:$.: $from includes $inc of $to, a sibling of its layer";
		}
	}
	close $fh;
}

if ($graph)
{
	my @order = sort { $rank{ (split / /, $b)[0] } <=> $rank{ (split / /, $a)[0] } || $a cmp $b }
	  keys %edges;
	for my $e (@order)
	{
		printf "%-28s %d\n", $e, scalar @{ $edges{$e} };
	}
	exit 0;
}

print "$_\n" for @problems;
exit(@problems ? 1 : 0);
