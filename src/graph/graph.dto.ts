import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, IsString, Length, Matches, Max, Min } from 'class-validator';

/** Largest page of any graph list. */
export const MAX_GRAPH_LIMIT = 500;

export class GraphListQuery {
  @ApiPropertyOptional({ minimum: 1, maximum: MAX_GRAPH_LIMIT, description: 'Items to return (default 20)' })
  @IsOptional()
  @Type(() => Number)
  @IsInt({ message: 'limit must be a whole number' })
  @Min(1)
  @Max(MAX_GRAPH_LIMIT)
  limit?: number;
}

export class FilePathQuery extends GraphListQuery {
  @ApiProperty({ example: 'src/main.ts', description: 'Path of a file in the repository, as git shows it' })
  @IsString({ message: 'path is required: ?path=<file path in the repository>' })
  @Length(1, 4096, { message: 'path must be 1 to 4096 characters long' })
  // A NUL can never be in a git path; anything else can.
  @Matches(/^[^\0]+$/, { message: 'path must not contain NUL characters' })
  path!: string;
}

export class CoChangedFilesQuery extends FilePathQuery {
  @ApiPropertyOptional({
    minimum: 1,
    maximum: 100_000,
    description: 'Ignore commits that changed more files than this (mass edits); default 200',
  })
  @IsOptional()
  @Type(() => Number)
  @IsInt({ message: 'maxFilesPerCommit must be a whole number' })
  @Min(1)
  @Max(100_000)
  maxFilesPerCommit?: number;
}

export class BranchCommitsQuery extends GraphListQuery {
  @ApiProperty({ example: 'main' })
  @IsString({ message: 'branch is required: ?branch=<branch name>' })
  @Length(1, 255, { message: 'branch must be 1 to 255 characters long' })
  branch!: string;

  @ApiPropertyOptional({
    example: '3f786850e387550fdab836ed7e6dc881de23001b',
    description: "Only commits this one does not reach (git's since..branch); all when omitted",
  })
  @IsOptional()
  @Matches(/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/, {
    message: 'since must be a full commit sha: 40 (or 64) lowercase hex characters',
  })
  since?: string;
}

export class GraphPersonView {
  @ApiProperty() email!: string;
  @ApiProperty({ type: String, nullable: true }) name!: string | null;
}

export class ContributorView extends GraphPersonView {
  @ApiProperty() commits!: number;
  @ApiProperty({ type: String, nullable: true, format: 'date-time' }) firstAuthoredAt!: string | null;
  @ApiProperty({ type: String, nullable: true, format: 'date-time' }) lastAuthoredAt!: string | null;
}

export class ContributorListView {
  @ApiProperty({ type: [ContributorView] }) items!: ContributorView[];
}

export class FileHistoryEntryView {
  @ApiProperty() sha!: string;
  @ApiProperty({ type: String, nullable: true }) subject!: string | null;
  @ApiProperty({ type: String, nullable: true, format: 'date-time' }) authoredAt!: string | null;
  @ApiProperty({ type: String, nullable: true, format: 'date-time' }) committedAt!: string | null;
  @ApiProperty({ type: GraphPersonView, nullable: true }) author!: GraphPersonView | null;
  @ApiProperty({ enum: ['A', 'M', 'D', 'R', 'C', 'T'] }) status!: string;
  @ApiProperty({ type: String, nullable: true, description: 'Path before a rename, or source of a copy' })
  previousPath!: string | null;
  @ApiProperty({ type: Number, nullable: true }) additions!: number | null;
  @ApiProperty({ type: Number, nullable: true }) deletions!: number | null;
  @ApiProperty() binary!: boolean;
}

export class FileHistoryView {
  @ApiProperty() path!: string;
  @ApiProperty({ type: [FileHistoryEntryView] }) items!: FileHistoryEntryView[];
}

export class CoChangedFileView {
  @ApiProperty() path!: string;
  @ApiProperty({ description: 'Commits that changed both files' }) commits!: number;
  @ApiProperty({ type: String, nullable: true, format: 'date-time' }) lastChangedTogetherAt!: string | null;
}

export class CoChangedFilesView {
  @ApiProperty() path!: string;
  @ApiProperty({ type: [CoChangedFileView] }) items!: CoChangedFileView[];
}

export class BranchCommitView {
  @ApiProperty() sha!: string;
  @ApiProperty({ type: String, nullable: true }) subject!: string | null;
  @ApiProperty({ type: String, nullable: true, format: 'date-time' }) authoredAt!: string | null;
  @ApiProperty({ type: String, nullable: true, format: 'date-time' }) committedAt!: string | null;
  @ApiProperty({ type: GraphPersonView, nullable: true }) author!: GraphPersonView | null;
  @ApiProperty({ type: Number, nullable: true }) parentCount!: number | null;
}

export class BranchCommitsView {
  @ApiProperty() branch!: string;
  @ApiProperty({ type: String, nullable: true }) headSha!: string | null;
  @ApiProperty() deleted!: boolean;
  @ApiProperty({ type: String, nullable: true }) since!: string | null;
  @ApiProperty({ type: [BranchCommitView] }) items!: BranchCommitView[];
}

export class GraphBranchSummaryView {
  @ApiProperty() name!: string;
  @ApiProperty({ type: String, nullable: true }) headSha!: string | null;
  @ApiProperty() deleted!: boolean;
  @ApiProperty() commits!: number;
  @ApiProperty({ description: 'Commits left behind by force-pushes' }) noLongerOnBranch!: number;
}

export class GraphRepositorySummaryView {
  @ApiProperty() id!: string;
  @ApiProperty({ type: String, nullable: true }) host!: string | null;
  @ApiProperty({ type: String, nullable: true }) fullName!: string | null;
  @ApiProperty() commits!: number;
  @ApiProperty() indexedCommits!: number;
  @ApiProperty() files!: number;
  @ApiProperty() parents!: number;
  @ApiProperty() changes!: number;
  @ApiProperty() people!: number;
  @ApiProperty({ type: [GraphBranchSummaryView] }) branches!: GraphBranchSummaryView[];
}
