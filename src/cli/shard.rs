//! `--shard I/N`, or `--shard auto`: the shard from the scheduler that started this task
//! (a Slurm job array, a Kubernetes Indexed Job, an AWS Batch array job).

/// Which shard of how many (1-based), and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
    /// The variables it was read from (`auto`), for the table's header.
    pub from: Option<String>,
}

/// The shard argument as given: `I/N`, or `auto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardArg {
    Given(usize, usize),
    Auto,
}

/// `I/N` with 1 <= I <= N, or `auto`.
pub fn parse(s: &str) -> Result<ShardArg, String> {
    if s.trim() == "auto" {
        return Ok(ShardArg::Auto);
    }
    let bad = || format!("`{s}`: a shard is I/N with 1 <= I <= N (e.g. 3/8), or `auto`");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok(ShardArg::Given(i, n))
}

/// The variable a Kubernetes Indexed Job's manifest sets to its `completions` (Kubernetes
/// exports the index, not the count).
pub const COUNT_VAR: &str = "HWNAS_SHARDS";

impl ShardArg {
    /// The shard, reading the scheduler's variables through `env` for `auto`.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
        match *self {
            ShardArg::Given(index, count) => Ok(Shard {
                index,
                count,
                from: None,
            }),
            ShardArg::Auto => from_scheduler(&env),
        }
    }
}

fn from_scheduler(env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
    let number = |var: &str| -> Result<Option<usize>, String> {
        env(var)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| format!("--shard auto: {var}=`{v}` is not a whole number"))
            })
            .transpose()
    };
    let shard = |index0: usize, count: usize, from: String| {
        if count == 0 || index0 >= count {
            return Err(format!(
                "--shard auto: {from} is not a task of the array (index {index0} of {count})"
            ));
        }
        Ok(Shard {
            index: index0 + 1,
            count,
            from: Some(from),
        })
    };
    if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let (Some(min), Some(max)) = (
            number("SLURM_ARRAY_TASK_MIN")?,
            number("SLURM_ARRAY_TASK_MAX")?,
        ) else {
            return Err(
                "--shard auto: SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_MIN/MAX".into(),
            );
        };
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let count = max.saturating_sub(min) / step + 1;
        // `--array=1,4,9` is no range: its tasks cannot be numbered from min, max and step.
        if number("SLURM_ARRAY_TASK_COUNT")?.is_some_and(|c| c != count)
            || id < min
            || (id - min) % step != 0
        {
            return Err(format!(
                "--shard auto: the Slurm array is not a range {min}-{max}:{step}; give --shard $((SLURM_ARRAY_TASK_ID+1))/N yourself"
            ));
        }
        let from = format!("SLURM_ARRAY_TASK_ID={id} of {min}-{max}:{step}");
        return shard((id - min) / step, count, from);
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = number(COUNT_VAR)?.ok_or_else(|| {
            format!(
                "--shard auto: JOB_COMPLETION_INDEX is set but not {COUNT_VAR}: set it to the Indexed Job's `completions` in the manifest"
            )
        })?;
        return shard(
            index,
            count,
            format!("JOB_COMPLETION_INDEX={index} of {COUNT_VAR}={count}"),
        );
    }
    if let Some(index) = number("AWS_BATCH_JOB_ARRAY_INDEX")? {
        let count = match number("AWS_BATCH_JOB_ARRAY_SIZE")? {
            Some(size) => size,
            None => number(COUNT_VAR)?.ok_or("--shard auto: AWS_BATCH_JOB_ARRAY_INDEX is set but neither AWS_BATCH_JOB_ARRAY_SIZE nor HWNAS_SHARDS")?,
        };
        return shard(
            index,
            count,
            format!("AWS_BATCH_JOB_ARRAY_INDEX={index} of {count}"),
        );
    }
    Err("--shard auto: no scheduler's task index is set (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX); outside a job array give --shard I/N".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn auto(vars: &[(&str, &str)]) -> Result<(usize, usize), String> {
        ShardArg::Auto
            .resolve(env(vars))
            .map(|s| (s.index, s.count))
    }

    #[test]
    fn shards_are_one_based_and_within_the_count() {
        assert_eq!(parse("3/8"), Ok(ShardArg::Given(3, 8)));
        assert_eq!(parse(" 8 / 8 "), Ok(ShardArg::Given(8, 8)));
        assert_eq!(parse("auto"), Ok(ShardArg::Auto));
        for bad in ["0/8", "9/8", "3", "a/8", "3/", "-1/8", "Auto"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad) && err.contains("I/N"), "{bad}: {err}");
        }
    }

    #[test]
    fn each_scheduler_numbers_its_tasks() {
        // sbatch --array=0-7 and --array=1-8: the same 8 shards.
        let slurm = |id: &'static str, min: &'static str, max: &'static str| {
            auto(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_MIN", min),
                ("SLURM_ARRAY_TASK_MAX", max),
                ("SLURM_ARRAY_TASK_COUNT", "8"),
            ])
        };
        assert_eq!(slurm("0", "0", "7"), Ok((1, 8)));
        assert_eq!(slurm("7", "0", "7"), Ok((8, 8)));
        assert_eq!(slurm("3", "1", "8"), Ok((3, 8)));
        // --array=0-14:2, 8 tasks.
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "14"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(auto(&stepped), Ok((4, 8)));
        // --array=1,4,9: no range.
        let listed = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "9"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ];
        assert!(auto(&listed).unwrap_err().contains("not a range"));
        let k8s = [("JOB_COMPLETION_INDEX", "2"), ("HWNAS_SHARDS", "4")];
        assert_eq!(auto(&k8s), Ok((3, 4)));
        let e = auto(&[("JOB_COMPLETION_INDEX", "2")]).unwrap_err();
        assert!(
            e.contains("HWNAS_SHARDS") && e.contains("completions"),
            "{e}"
        );
        let aws = [
            ("AWS_BATCH_JOB_ARRAY_INDEX", "9"),
            ("AWS_BATCH_JOB_ARRAY_SIZE", "10"),
        ];
        assert_eq!(auto(&aws), Ok((10, 10)));
        let e = auto(&[
            ("AWS_BATCH_JOB_ARRAY_INDEX", "10"),
            ("AWS_BATCH_JOB_ARRAY_SIZE", "10"),
        ]);
        assert!(e.unwrap_err().contains("not a task of the array"));
        let e = auto(&[("JOB_COMPLETION_INDEX", "x"), ("HWNAS_SHARDS", "4")]).unwrap_err();
        assert!(e.contains("JOB_COMPLETION_INDEX=`x`"), "{e}");
        let e = auto(&[]).unwrap_err();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID") && e.contains("--shard I/N"),
            "{e}"
        );
        let given = parse("3/8").unwrap().resolve(env(&k8s)).unwrap();
        assert_eq!((given.index, given.count, given.from), (3, 8, None));
    }
}
