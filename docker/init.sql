-- Demo schema for the Docker example (docker/compose.yaml and
-- scripts/docker_test.sh). The PostgreSQL container runs it once, when it
-- initialises an empty data directory (/docker-entrypoint-initdb.d/), connected
-- as POSTGRES_USER to POSTGRES_DB. docker/larder.yaml maps these rows to Redis
-- hashes named user:{id}.
CREATE TABLE IF NOT EXISTS public.users (
  id    bigint PRIMARY KEY,
  name  text NOT NULL,
  email text
);

INSERT INTO public.users (id, name, email) VALUES
  (1, 'Ada Lovelace', 'ada@example.org'),
  (2, 'Alan Turing', 'alan@example.org')
ON CONFLICT (id) DO NOTHING;
