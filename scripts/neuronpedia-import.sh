#!/usr/bin/env bash
# Imports one source exported by `saeidx export neuronpedia` into a Neuronpedia
# PostgreSQL database, doing what Neuronpedia's importer (its webapp's
# app/api/admin/import route and lib/db/import.ts) does with the same files fetched from
# its S3 bucket:
#
#   1. model.jsonl, sourceset.jsonl, source.jsonl: each row created unless one with its
#      key exists (Prisma's create, which refuses a field the table lacks);
#   2. each features/*.jsonl.gz into "Neuron", then each activations/*.jsonl.gz into
#      "Activation", then the explanations/*.jsonl.gz lines, 10000 at a time, into
#      "Explanation": INSERT … SELECT … FROM jsonb_to_recordset(lines) … ON CONFLICT DO
#      NOTHING, with the columns named by the first line's keys (others are dropped:
#      this script warns about them) and typed as information_schema says.
#
# Unlike the importer, it runs in one transaction: a failed import leaves nothing behind.
# It prints, for each file, how many of its rows were new.
#
#   scripts/neuronpedia-import.sh EXPORT/<modelId>/<sourceId> [PSQL ARGUMENTS...]
#
# The connection is psql's: its arguments (e.g. a URL such as Neuronpedia's local default
# postgresql://postgres:postgres@localhost:5432/postgres) or the PG* environment
# variables. PSQL names the psql to run (default: psql).
set -euo pipefail

die() { printf '[neuronpedia-import] error: %s\n' "$*" >&2; exit 1; }

(($# >= 1)) || die "usage: scripts/neuronpedia-import.sh EXPORT/<modelId>/<sourceId> [psql arguments...]"
folder=$1
shift
psql=${PSQL:-psql}
for file in model.jsonl sourceset.jsonl source.jsonl; do
  [[ -f $folder/$file ]] || die "$folder/$file is missing: give the folder of one source, OUT/<modelId>/<sourceId>, that saeidx export neuronpedia wrote"
done
command -v "$psql" >/dev/null || die "$psql not found: install PostgreSQL's client (apt-get install postgresql-client)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
script=$work/import.sql
chunks=0

# Writes lines (stdin) as JSON arrays of at most $1 lines each, replacing \u0000 with a
# space as the importer does, and adds a statement inserting each into table $2
# ($3: prisma for rows Prisma creates, rows for batch inserts) labelled $4.
add_chunks() {
  local size=$1 table=$2 mode=$3 label=$4 part
  sed -e 's/\\u0000/ /g' -e '/^[[:space:]]*$/d' | split -l "$size" - "$work/lines-$chunks-"
  for part in "$work/lines-$chunks-"*; do
    [[ -e $part ]] || continue
    { printf '['; paste -sd, "$part"; printf ']'; } >"$work/chunk-$chunks.json"
    cat >>"$script" <<EOF
\\set lines \`cat $work/chunk-$chunks.json\`
SELECT pg_temp.neuronpedia_import('$table', :'lines'::jsonb, '$mode', '$label');
EOF
    chunks=$((chunks + 1))
  done
}

cat >"$script" <<'EOF'
\set ON_ERROR_STOP on
CREATE FUNCTION pg_temp.neuronpedia_import(tbl text, lines jsonb, mode text, label text)
RETURNS text LANGUAGE plpgsql AS $import$
DECLARE
  first_keys text[] := ARRAY(SELECT jsonb_object_keys(lines -> 0));
  all_keys text[] := ARRAY(SELECT DISTINCT jsonb_object_keys(e) FROM jsonb_array_elements(lines) e);
  columns text[] := ARRAY(SELECT column_name::text FROM information_schema.columns
                          WHERE table_name = tbl);
  unknown text[];
  defs text;
  list text;
  inserted bigint;
BEGIN
  IF mode = 'prisma' THEN
    unknown := ARRAY(SELECT unnest(all_keys) EXCEPT SELECT unnest(columns));
    IF cardinality(unknown) > 0 THEN
      RAISE EXCEPTION '%: Prisma would refuse to create % rows with field(s) % (not columns of %)',
        label, tbl, unknown, tbl;
    END IF;
    IF tbl = 'SourceSet' THEN
      -- The importer creates source sets with urls: line.urls ?? [].
      lines := (SELECT jsonb_agg(e || jsonb_build_object('urls',
                  COALESCE(NULLIF(e -> 'urls', 'null'::jsonb), '[]'::jsonb)))
                FROM jsonb_array_elements(lines) e);
      first_keys := ARRAY(SELECT jsonb_object_keys(lines -> 0));
    END IF;
  ELSE
    unknown := ARRAY(SELECT unnest(all_keys) EXCEPT SELECT unnest(first_keys))
            || ARRAY(SELECT unnest(first_keys) EXCEPT SELECT unnest(columns));
    IF cardinality(unknown) > 0 THEN
      RAISE WARNING '%: Neuronpedia''s importer drops the values of % (not columns of % named by the first line)',
        label, unknown, tbl;
    END IF;
  END IF;
  -- The importer's column query: the table's columns that the first line names, in
  -- table order, typed from information_schema (arrays as element type + '[]').
  SELECT string_agg(format('%I %s', c.column_name,
           CASE WHEN c.data_type = 'ARRAY' THEN c.udt_name::regtype::text || '[]'
                WHEN c.data_type = 'USER-DEFINED' THEN quote_ident(c.udt_name)
                ELSE c.data_type END), ', ' ORDER BY c.ordinal_position),
         string_agg(format('%I', c.column_name), ', ' ORDER BY c.ordinal_position)
    INTO defs, list
    FROM information_schema.columns c
   WHERE c.table_name = tbl AND c.column_name = ANY (first_keys);
  EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM jsonb_to_recordset($1) AS t(%s) ON CONFLICT DO NOTHING',
                 tbl, list, list, defs)
    USING lines;
  GET DIAGNOSTICS inserted = ROW_COUNT;
  RETURN format('%s %s: %s of %s rows new', tbl, label, inserted, jsonb_array_length(lines));
END
$import$;
EOF

add_chunks 65000 Model prisma model.jsonl <"$folder/model.jsonl"
add_chunks 65000 SourceSet prisma sourceset.jsonl <"$folder/sourceset.jsonl"
add_chunks 65000 Source prisma source.jsonl <"$folder/source.jsonl"
# S3 lists keys in byte order, as LC_ALL=C sorts.
batches() { (cd "$folder" && LC_ALL=C compgen -G "$1/*.jsonl.gz" | LC_ALL=C sort) || true; }
# (Process substitution, not a pipe: add_chunks must run in this shell to count.)
for file in $(batches features); do
  add_chunks 65000 Neuron rows "$file" < <(gzip -dc "$folder/$file")
done
for file in $(batches activations); do
  add_chunks 65000 Activation rows "$file" < <(gzip -dc "$folder/$file")
done
explanations=$(batches explanations)
if [[ -n $explanations ]]; then
  add_chunks 10000 Explanation rows "explanations/" \
    < <(for file in $explanations; do gzip -dc "$folder/$file"; echo; done)
fi

"$psql" -X -q -At --single-transaction -v ON_ERROR_STOP=1 "$@" -f "$script"
