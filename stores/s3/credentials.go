package s3

import (
	"fmt"
	"os"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// resolveCredentials picks the credentials the way the AWS tools do:
// explicit keys, else the environment, else the shared files. It returns
// them with a description of where they came from that holds no secret
// (for logs and errors).
func resolveCredentials(o Options) (*credentials.Credentials, string, error) {
	if o.AccessKey != "" {
		return credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken), "config (access_key)", nil
	}

	// Environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the
	// older AWS_ACCESS_KEY, AWS_SECRET_KEY), plus AWS_SESSION_TOKEN. Only
	// used when no profile or file was asked for explicitly.
	if o.Profile == "" && o.CredentialsFile == "" {
		env := &credentials.EnvAWS{}
		if v, err := env.Retrieve(); err == nil && v.AccessKeyID != "" && v.SecretAccessKey != "" {
			return credentials.New(env), "environment (AWS_ACCESS_KEY_ID)", nil
		}
	}

	// Shared files: CredentialsFile alone when set, else the AWS config
	// file and the shared credentials file (AWS_CONFIG_FILE,
	// AWS_SHARED_CREDENTIALS_FILE, or their places in ~/.aws), profile
	// Profile, else AWS_PROFILE, else "default".
	file := &credentials.FileAWSCredentials{Filename: o.CredentialsFile, Profile: o.Profile}
	profile := o.Profile
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	if profile == "" {
		profile = "default"
	}
	where := "shared credentials files"
	if o.CredentialsFile != "" {
		where = o.CredentialsFile
	} else if p := os.Getenv("AWS_SHARED_CREDENTIALS_FILE"); p != "" {
		where = p
	}
	v, ferr := file.RetrieveWithCredContext(&credentials.CredContext{})
	if ferr == nil && v.AccessKeyID != "" && v.SecretAccessKey != "" {
		return credentials.New(file), fmt.Sprintf("%s (profile %s)", where, profile), nil
	}
	if o.Profile != "" || o.CredentialsFile != "" {
		// Asked for by name: not finding it is an error, not anonymity.
		if ferr == nil {
			ferr = fmt.Errorf("profile has no aws_access_key_id/aws_secret_access_key")
		}
		return nil, "", fmt.Errorf("%w: %s, profile %s: %w", ErrNoCredentials, where, profile, ferr)
	}
	if o.Anonymous {
		return credentials.NewStaticV4("", "", ""), "anonymous", nil
	}
	return nil, "", fmt.Errorf("%w: set access_key and secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in the shared credentials file (looked in %s, profile %s)", ErrNoCredentials, where, profile)
}
