-- Runs once, when the postgres service initialises its volume: the warehouse database
-- (`dora`, POSTGRES_DB) is created by the image; Dagster's instance gets its own.
create database dagster;
